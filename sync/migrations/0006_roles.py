"""The two console roles as groups: viewers see everything but secrets; operators also start runs, resolve
conflicts and make backups. Admins (staff) manage the configuration in the admin."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = {"viewer": ["view_console"], "operator": ["view_console", "operate_console"]}


def create_roles(apps, schema_editor):
    app_config = apps.get_app_config("sync")
    app_config.models_module = True  # lets create_permissions run inside a migration
    create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="sync", codename__in=codenames))


def delete_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [("sync", "0005_console_permissions"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(create_roles, delete_roles)]
