"""Celery tasks: take ids, load, call the engine or a service, save, report progress."""
