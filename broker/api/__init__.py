"""The broker control plane (FastAPI): enrolment, health, admin API."""
