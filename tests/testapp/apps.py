from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"

    def ready(self) -> None:
        from django.contrib.auth.models import Group

        import django_cacheaside

        # The register() path for a model we do not own; auth.User goes through CACHEASIDE["MODELS"].
        django_cacheaside.register(Group, ttl=120)
