"""Edge Impulse-compatible ingestion paths (/api/<category>/data, /api/<category>/files)."""
from django.urls import path

from . import api_ingestion

urlpatterns: list = [
    path("<str:category>/data", api_ingestion.ingest_data, name="ingest-data"),
    path("<str:category>/files", api_ingestion.ingest_files, name="ingest-files"),
]
