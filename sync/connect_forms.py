"""Forms of the Connect a cloud page (sync/connect_views.py): a clouds.yaml pasted or uploaded, or one target
entered by hand, then the choices made once the connections are tested (master region, regions to synchronise,
replacing the demo)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from django import forms

from sync.clouds_yaml import CloudsYamlError, parse_clouds
from sync.models import Target

MAX_UPLOAD = 256 * 1024  # a clouds.yaml is a few kilobytes
PASTED = "clouds.yaml"  # how messages name a pasted text


class CloudsYamlForm(forms.Form):
    """The text is read exactly as `manage.py import_clouds_yaml` reads a file; a YAML error names the line."""

    text = forms.CharField(
        label="clouds.yaml",
        required=False,
        strip=False,
        widget=forms.Textarea(
            attrs={"rows": 14, "spellcheck": "false", "autocomplete": "off", "class": "font-monospace"}
        ),
        help_text="Paste the file openstacksdk reads (<code>~/.config/openstack/clouds.yaml</code>): one target per "
        "cloud, with its password.",
    )
    upload = forms.FileField(label="or upload the file", required=False)

    def clean(self):
        data = super().clean()
        upload, text = data.get("upload"), data.get("text") or ""
        if upload is not None:
            source = PurePath(upload.name).name or PASTED
            if upload.size > MAX_UPLOAD:
                raise forms.ValidationError(f"{source} is larger than {MAX_UPLOAD // 1024} KiB: not a clouds.yaml")
            try:
                text = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                raise forms.ValidationError(f"{source}: not UTF-8 text") from None
        elif text.strip():
            source = PASTED
        else:
            raise forms.ValidationError("Paste a clouds.yaml, or choose the file.")
        data["source"] = source
        try:
            data["clouds"] = parse_clouds(text, source)
        except CloudsYamlError as error:
            self.add_error("text" if upload is None else "upload", str(error))
        return data


class ManualTargetForm(forms.Form):
    """One target by hand; its values become a clouds.yaml entry, so both ways are imported alike. The password
    box is never filled again: after an error only the password is typed again."""

    auth_url = forms.URLField(
        label="Keystone URL",
        assume_scheme="https",
        help_text="The identity endpoint, e.g. <code>https://keystone.example.org:5000/v3</code>.",
    )
    identity_api_version = forms.ChoiceField(
        label="Keystone API version", choices=Target.IdentityVersion.choices, initial=Target.IdentityVersion.V3
    )
    user = forms.CharField(label="User", max_length=255)
    password = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    project_name = forms.CharField(label="Project", max_length=255)
    user_domain = forms.CharField(label="User domain", max_length=255, initial="Default")
    project_domain = forms.CharField(label="Project domain", max_length=255, initial="Default")
    cacert = forms.CharField(
        label="CA certificate file",
        max_length=1000,
        required=False,
        help_text="Optional: the path, on the GlanceSync server, of the CA bundle that signed Keystone's and "
        "Glance's certificates. Empty: the system's CAs.",
    )
    insecure = forms.BooleanField(label="Skip TLS verification (test clouds only)", required=False)

    def entry(self) -> dict:
        """The values as a clouds.yaml entry (sync.clouds_yaml.entry_fields reads it)."""
        data = self.cleaned_data
        entry = {
            "auth": {
                "auth_url": data["auth_url"],
                "username": data["user"],
                "password": data["password"],
                "project_name": data["project_name"],
                "user_domain_name": data["user_domain"],
                "project_domain_name": data["project_domain"],
            },
            "identity_api_version": data["identity_api_version"],
        }
        if data["cacert"]:
            entry["cacert"] = data["cacert"]
        if data["insecure"]:
            entry["verify"] = False
        return entry


@dataclass
class Choices:
    master_cloud: str
    master_region: str
    regions: dict[str, list[str]]  # the regions ticked, per cloud, in the catalog's order


class ConnectChoicesForm(forms.Form):
    """The master region among the regions of the master cloud's catalog, the regions to synchronise of each
    cloud (all ticked at first), and, when the demo is in use, the confirmation that it is replaced."""

    def __init__(self, *args, catalogs: dict[str, list[str]], demo: bool, saving: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.catalogs, self.demo, self.saving = catalogs, demo, saving
        # A cloud named master is the target master (import_clouds_yaml's rule): then only its regions can be.
        masters = ["master"] if "master" in catalogs else list(catalogs)
        options = {cloud: [(f"{cloud}:{region}", region) for region in catalogs[cloud]] for cloud in masters}
        self.fields["master_region"] = forms.ChoiceField(
            label="Master region",
            choices=[(cloud, group) for cloud, group in options.items()] if len(masters) > 1 else options[masters[0]],
            help_text="The region whose images are copied to the other regions.",
        )
        for cloud, regions in catalogs.items():
            self.fields[f"regions_{cloud}"] = forms.MultipleChoiceField(
                label="Regions to synchronise" if len(catalogs) == 1 else f"Regions of {cloud} to synchronise",
                choices=[(region, region) for region in regions],
                initial=list(regions),
                required=False,
                widget=forms.CheckboxSelectMultiple,
                help_text="The regions of the catalog with a Glance. An unticked region is left out "
                "(its target's <em>ignore regions</em>).",
            )
        if demo:
            self.fields["replace_demo"] = forms.BooleanField(
                label="Replace the demo configuration",
                required=False,
                help_text="Its targets, regions, checksum decisions and statuses are deleted when you save.",
            )

    def clean(self):
        data = super().clean()
        if self.demo and self.saving and not data.get("replace_demo"):
            self.add_error("replace_demo", "Tick it to replace the demo configuration: saving deletes it.")
        return data

    def choices(self) -> Choices:
        """What the form says: its valid fields when bound (an unknown master region falls back to the first),
        its initial values when not."""
        data = {}
        if self.is_bound:
            self.is_valid()  # cleaned_data then holds the fields that are valid
            data = self.cleaned_data
        cloud, _, region = (data.get("master_region") or _first_value(self.fields["master_region"])).partition(":")
        regions = {}
        for name, catalog in self.catalogs.items():
            ticked = data.get(f"regions_{name}", catalog)
            regions[name] = [r for r in catalog if r in ticked or (name == cloud and r == region)]
        return Choices(master_cloud=cloud, master_region=region, regions=regions)


def _first_value(field: forms.ChoiceField) -> str:
    value, label = field.choices[0]
    return label[0][0] if isinstance(label, list | tuple) else value  # a group's first option
