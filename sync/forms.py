"""Forms of the configuration admin: the target form with a write-only password."""

from __future__ import annotations

from django import forms

from sync.models import Target

PASSWORD_FORM_FIELDS = ("new_password", "clear_password")
# Every editable Target field but the stored password, which the form never renders.
TARGET_FORM_FIELDS = tuple(
    field.name
    for field in Target._meta.get_fields()
    if getattr(field, "editable", False) and field.concrete and not field.auto_created and field.name != "password"
)


class TargetAdminForm(forms.ModelForm):
    """The stored password is never sent to the browser: the form only says whether one is set.

    Leaving "new password" empty keeps the stored one; "clear password" removes it.
    """

    new_password = forms.CharField(
        label="Change password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    clear_password = forms.BooleanField(label="Clear the stored password", required=False)

    class Meta:
        model = Target
        fields = TARGET_FORM_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        state = "set" if self.instance.pk and self.instance.password else "not set"
        self.fields[
            "new_password"
        ].help_text = f"Stored password: <strong>{state}</strong>. Leave empty to keep it; it is never shown back."

    def clean(self):
        data = super().clean()
        if data.get("new_password") and data.get("clear_password"):
            self.add_error("clear_password", "Either set a new password or clear it, not both.")
        return data

    def save(self, commit=True):
        if self.cleaned_data.get("clear_password"):
            self.instance.password = ""
        elif self.cleaned_data.get("new_password"):
            self.instance.password = self.cleaned_data["new_password"]
        return super().save(commit)

    def changed_field_names(self) -> list[str]:
        """Changed fields for the audit log ("password" stands for both password boxes)."""
        names = [name for name in self.changed_data if name not in PASSWORD_FORM_FIELDS]
        if self.cleaned_data.get("new_password") or self.cleaned_data.get("clear_password"):
            names.append("password")
        return names
