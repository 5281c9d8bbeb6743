"""HTML pages of data acquisition: the data set explorer with uploads, and one sample's page."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from . import selectors_samples
from .access import user_access
from .api_samples import SampleSerializer
from .models import Category, Role, Sample
from .services_samples import UPLOAD_CATEGORIES


def _context(access, **extra) -> dict:
    return {"project": access.project, "access": access, "role": access.role,
            "can_edit": access.can(Role.EDITOR), "categories": Category.choices,
            "upload_categories": UPLOAD_CATEGORIES, **extra}


@login_required
def data(request, project_id: int):
    access = user_access(request.user, project_id, Role.VIEWER)
    # Other pages link to a sample as data?sample=<id>&t=<ms> (a window in it): open its page.
    sample_id = request.GET.get("sample", "")
    if sample_id.isdigit():
        url = reverse("sample", kwargs={"project_id": project_id, "sample_id": int(sample_id)})
        t = request.GET.get("t", "")
        return redirect(f"{url}?t={t}" if t.replace(".", "", 1).isdigit() else url)
    return render(request, "projects/data.html", _context(
        access, summary=selectors_samples.dataset_summary(access.project)))


@login_required
def sample(request, project_id: int, sample_id: int):
    access = user_access(request.user, project_id, Role.VIEWER)
    row = get_object_or_404(Sample.objects.select_related("uploader", "device"), pk=sample_id,
                            project=access.project)
    return render(request, "projects/sample.html", _context(
        access, sample=row, sample_json=SampleSerializer(row).data))
