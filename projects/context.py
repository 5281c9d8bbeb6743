"""Template context shared by every page: the project navigation, with sections that exist."""
from django.urls import NoReverseMatch, reverse

# (label, URL name); a section appears once its URL name is registered.
SECTIONS = [
    ("Dashboard", "project"),
    ("Devices", "devices"),
    ("Data acquisition", "data"),
    ("Impulse design", "impulse"),
    ("Training", "training"),
    ("Model testing", "model-testing"),
    ("Live classification", "live-classification"),
    ("Deployment", "deployment"),
    ("Models", "byom"),
    ("Jobs", "jobs"),
    ("Members", "members"),
    ("Keys", "api-keys-page"),
    ("Settings", "project-settings"),
]


def studio(request):
    match = getattr(request, "resolver_match", None)
    project_id = match.kwargs.get("project_id") if match else None
    nav = []
    if project_id is not None:
        for label, name in SECTIONS:
            try:
                url = reverse(name, kwargs={"project_id": project_id})
            except NoReverseMatch:
                continue
            nav.append({"label": label, "url": url, "active": match.url_name == name})
    return {"studio_name": "Tiny Studio", "project_nav": nav}
