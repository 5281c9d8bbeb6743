"""Edge Impulse-compatible ingestion paths (/api/<category>/data, /api/<category>/files)."""
urlpatterns: list = []
