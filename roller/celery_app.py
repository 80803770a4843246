"""The Celery application, configured from the top-level celeryconfig module."""

from celery import Celery

app = Celery("roller", include=["roller.tasks"])
app.config_from_object("celeryconfig")
