"""The admin's "Cache statistics" page (``admin:django_cacheaside_stats``), and its purge actions.

Reading it takes ``django_cacheaside.view_statistics``; purging a model's entries or a tag takes
``django_cacheaside.purge_cache`` too. A purge is a POST (CSRF-protected), confirmed on a second
page, logged (logger ``django_cacheaside.admin``) and counted as an invalidation (cause ``model`` or
``tag``), like :func:`~django_cacheaside.invalidation.invalidate_model` and
:func:`~django_cacheaside.invalidation.invalidate_tags`, which it calls.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from django_cacheaside import registry, signals
from django_cacheaside.admin_views import page_context, parse_window
from django_cacheaside.exceptions import BackendError
from django_cacheaside.invalidation import invalidate_model, invalidate_tags
from django_cacheaside.models import Statistics

logger = logging.getLogger("django_cacheaside.admin")

PURGE_PERMISSION = "django_cacheaside.purge_cache"

if TYPE_CHECKING:
    _Base = admin.ModelAdmin[Statistics]
else:
    _Base = admin.ModelAdmin


def _label(model: type[Any]) -> str:
    return f"{model._meta.app_label}.{model._meta.object_name}"


@admin.register(Statistics)
class StatisticsAdmin(_Base):
    """The changelist is the stats page: there are no rows to list, add, change or delete."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_purge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PURGE_PERMISSION)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        own = [
            path("", wrap(self.stats_view), name="django_cacheaside_stats"),
            path("purge/", wrap(require_POST(self.purge_view)), name="django_cacheaside_purge"),
        ]
        return own + super().get_urls()

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return self.stats_view(request)

    # -- pages -----------------------------------------------------------------------------------

    def _context(self, request: HttpRequest, title: str) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "can_purge": self.has_purge_permission(request),
        }

    def stats_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        name, seconds = parse_window(request.GET.get("window"))
        show_all = request.GET.get("all") == "1"
        context = {
            **self._context(request, "Cache statistics"),
            **page_context(name, seconds, show_all),
        }
        return TemplateResponse(request, "admin/django_cacheaside/stats.html", context)

    def purge_view(self, request: HttpRequest) -> HttpResponse:
        """POST ``model=<label>`` or ``tag=<name>``: without ``confirm=yes``, the confirmation page;
        with it, the purge, then back to the stats page with a message."""
        if not (self.has_view_permission(request) and self.has_purge_permission(request)):
            raise PermissionDenied
        stats_url = reverse("admin:django_cacheaside_stats")
        label = request.POST.get("model", "").strip()
        tag = request.POST.get("tag", "").strip()
        if bool(label) == bool(tag):
            messages.error(request, "Choose a model or a tag to purge.")
            return HttpResponseRedirect(stats_url)
        model = None
        if label:
            cached = {_label(m).lower(): m for m in registry.cached_models()}
            model = cached.get(label.lower())
            if model is None:
                messages.error(request, f"{label!r} is not a cached model.")
                return HttpResponseRedirect(stats_url)
            label = _label(model)
        what = f"model {label}" if model is not None else f"tag {tag!r}"
        if request.POST.get("confirm") != "yes":
            context = {
                **self._context(request, "Purge cached entries"),
                "what": what,
                "model": label,
                "tag": tag,
                "window": parse_window(request.POST.get("window"))[0],
            }
            return TemplateResponse(request, "admin/django_cacheaside/purge_confirm.html", context)
        failures: list[BaseException] = []
        me = threading.get_ident()

        def record(sender: Any, error: BaseException, **kwargs: Any) -> None:
            if threading.get_ident() == me:  # the backend fails open: it signals, not raises
                failures.append(error)

        signals.cache_error.connect(record, weak=False)
        try:
            deleted = invalidate_model(model) if model is not None else invalidate_tags(tag)
        except ValueError as exc:  # not a valid tag
            messages.error(request, str(exc))
            return HttpResponseRedirect(stats_url)
        except BackendError as exc:
            failures.append(exc)
        finally:
            signals.cache_error.disconnect(record)
        if failures:
            logger.warning("%s could not purge %s: %s", request.user, what, failures[0])
            messages.error(request, f"Could not purge {what}: Redis failed ({failures[0]}).")
            return HttpResponseRedirect(stats_url)
        logger.info("%s purged the cached entries of %s (%d keys)", request.user, what, deleted)
        messages.success(request, f"Purged {what}: {deleted} cached entries dropped.")
        window, _seconds = parse_window(request.POST.get("window"))
        return HttpResponseRedirect(f"{stats_url}?window={window}")
