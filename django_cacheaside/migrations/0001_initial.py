from typing import ClassVar

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: ClassVar[list[tuple[str, str]]] = []

    operations: ClassVar = [
        migrations.CreateModel(
            name="Statistics",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
            ],
            options={
                "verbose_name": "Cache statistics",
                "verbose_name_plural": "Cache statistics",
                "db_table": "django_cacheaside_statistics",
                "permissions": [("purge_cache", "Can purge cached entries")],
                "managed": False,
                "default_permissions": ("view",),
            },
        ),
    ]
