from django.contrib.auth.models import Permission
from django.http import HttpResponse
from django.urls import path


def index(request):
    # Only answers once `manage.py migrate` made the tables (CC_PYTHON_MANAGE_TASKS).
    return HttpResponse(f"Hello from Django on gunicorn: {Permission.objects.count()} permissions\n")


urlpatterns = [path("", index)]
