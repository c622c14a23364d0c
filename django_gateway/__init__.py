"""django-gateway: an API gateway inside a Django project."""

__version__ = "0.1.0"
