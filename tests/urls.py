from django.contrib import admin
from django.http import HttpResponse
from django.urls import path


def django_view(request, rest=""):
    """Stands for the project's own views: requests no route matches must end up here untouched."""
    return HttpResponse(f"django:{request.method}:{request.path}", content_type="text/plain")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("django/<path:rest>", django_view),
    path("", django_view),
]
