"""`manage.py project_create --owner USERNAME --name NAME`: a project and an admin API key, as JSON."""
import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from projects import services
from projects.models import KeyRole


class Command(BaseCommand):
    help = "Create a project owned by USERNAME and an admin API key; prints {\"id\": ..., \"api_key\": ...}."

    def add_arguments(self, parser):
        parser.add_argument("--owner", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--description", default="")

    def handle(self, *args, owner, name, description, **options):
        user = get_user_model().objects.filter(username=owner).first()
        if user is None:
            raise CommandError(f"no user '{owner}'")
        try:
            project = services.project_create(owner=user, name=name, description=description)
            _, key = services.api_key_create(project=project, actor=services.Actor(user=user),
                                             name="admin (project_create)", role=KeyRole.ADMIN)
        except services.ServiceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps({"id": project.id, "api_key": key}))
