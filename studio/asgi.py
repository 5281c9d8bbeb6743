"""ASGI entry point: HTTP through Django, websockets through Channels (studio/routing.py)."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from studio.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Devices authenticate with their API key inside the protocol, browsers with the session
        # cookie; both are checked by each consumer, so no origin validator that would stop devices.
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
