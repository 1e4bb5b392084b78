from __future__ import annotations

from django.contrib import admin
from django.urls import path

from saas import views

urlpatterns = [
    path("", views.home, name="home"),
    path("o/<slug:org_slug>/", views.organisation, name="organisation"),
    path("o/<slug:org_slug>/a/<slug:slug>/", views.article, name="article"),
    path("o/<slug:org_slug>/a/<slug:slug>/edit/", views.article_edit, name="article-edit"),
    path("u/<str:username>/", views.profile, name="profile"),
    path("api/o/<slug:org_slug>/dashboard/", views.dashboard_json, name="dashboard-json"),
    path("admin/", admin.site.urls),
]
