"""The test suite's URLs: the admin, for the "Cache statistics" page (tests/test_admin.py)."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
