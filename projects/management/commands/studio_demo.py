"""`manage.py studio_demo`: the demo account and demo project `make run` prints (idempotent)."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from projects import services
from projects.models import KeyRole, Project

DEMO_USER = "demo"
DEMO_PASSWORD = "demo-studio-2026"
DEMO_PROJECT = "Demo: gestures"


class Command(BaseCommand):
    help = "Create (once) the demo account and its demo project, and print how to log in."

    def handle(self, *args, **options):
        User = get_user_model()
        user = User.objects.filter(username=DEMO_USER).first()
        if user is None:
            user = User.objects.create_user(DEMO_USER, email="demo@example.com", password=DEMO_PASSWORD)
        project = Project.objects.filter(memberships__user=user, name=DEMO_PROJECT).first()
        created = False
        if project is None:
            project = services.project_create(owner=user, name=DEMO_PROJECT, kind="motion",
                                              description="Wii remote gestures (UCR archive), ready to train.")
            services.api_key_create(project=project, actor=services.Actor(user=user), name="demo device",
                                    role=KeyRole.INGESTION)
            created = True
        try:
            from projects.demo import demo_populate

            demo_populate(project=project, user=user)
        except ImportError:
            pass
        self.stdout.write("")
        self.stdout.write("  Tiny Studio demo account" + (" (created)" if created else ""))
        self.stdout.write(f"    user:     {DEMO_USER}")
        self.stdout.write(f"    password: {DEMO_PASSWORD}")
        self.stdout.write(f"    project:  {project.name} (id {project.id})")
        self.stdout.write("")
