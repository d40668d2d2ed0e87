"""Connect a cloud (issue #15): staff connect the console to their OpenStack in two steps, without the admin.

1. `/connect/`: a clouds.yaml pasted or uploaded (read as `manage.py import_clouds_yaml` reads it), or one target
   entered by hand. Each target's connection is tested (sync.clouds.probe: the Keystone login, the image
   endpoints of its catalog, each region's Glance), every failure in plain words. A failure shows the form again
   with the error, and nothing is kept.
2. `/connect/review/`: the tests' results, the master region (a select of the master cloud's catalog regions),
   the regions to synchronise of each target, the confirmation that replaces the demo configuration, and what
   saving would create or change: the import itself, run in a transaction that is rolled back (htmx re-renders
   it when a choice changes; without JavaScript, "Show what would change"). **Save** does it for real in one
   transaction, audited, sets the master settings, queues the first status refresh and goes to the overview.

Between the two steps the draft stays on the server, in the session, encrypted with the Fernet keys of the
stored passwords (sync.crypto), for DRAFT_SECONDS at most. No password goes back to the browser: no hidden field
carries one and the password box is never refilled. A pasted clouds.yaml with a YAML error comes back in its
box, as any form shows what was typed, so that the line the error names can be fixed there; these pages are
never cached.
"""

from __future__ import annotations

import json
import time

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from sync.clouds.probe import probe
from sync.clouds_yaml import CloudImport, CloudsYamlError, Prepared, prepare
from sync.connect_forms import Choices, CloudsYamlForm, ConnectChoicesForm, ManualTargetForm
from sync.crypto import SecretDecryptionError, decrypt, encrypt
from sync.models import (
    AuditEntry,
    ChecksumDecision,
    Defaults,
    ImageState,
    MasterSettings,
    RefreshRequest,
    Region,
    RegionSnapshot,
    StatusRefresh,
    Target,
    csv_items,
)

DRAFT_KEY = "glancesync_connect_draft"
DRAFT_SECONDS = 3600  # a tested connection older than this is tested again
BY_HAND = "the form"  # how messages name the target entered by hand
CONNECT_PERMISSIONS = ("sync.add_target", "sync.change_target", "sync.add_region", "sync.change_mastersettings")


class _DryRun(Exception):
    pass


def _require_staff(request) -> None:
    """Staff only, with the admin permissions the page exercises (it must not do more than the admin would)."""
    if not request.user.is_staff:
        raise PermissionDenied("Only staff users connect a cloud.")
    if not request.user.has_perms(CONNECT_PERMISSIONS):
        raise PermissionDenied("Connecting a cloud needs the permissions to add and change targets and regions.")


# -- the draft between the two steps ---------------------------------------------------------------------------


def _store_draft(request, draft: dict) -> None:
    request.session[DRAFT_KEY] = encrypt(json.dumps({**draft, "tested_at": time.time()}))


def _load_draft(request) -> dict | None:
    token = request.session.get(DRAFT_KEY)
    if not token:
        return None
    try:
        draft = json.loads(decrypt(token))
    except SecretDecryptionError:  # the keys were rotated and the old one dropped since
        draft = {}
    if time.time() - draft.get("tested_at", 0) > DRAFT_SECONDS:
        _drop_draft(request)
        return None
    return draft


def _drop_draft(request) -> None:
    request.session.pop(DRAFT_KEY, None)


# -- step 1: enter and test ------------------------------------------------------------------------------------


def _entry_page(request, manual, clouds_yaml, results=(), status=200):
    context = {"manual": manual, "clouds_yaml": clouds_yaml, "results": results, "demo": MasterSettings.demo_in_use()}
    return render(request, "sync/connect.html", context, status=status)


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def connect(request):
    """Enter a cloud and test its connection; a success keeps the draft and goes to the choices."""
    _require_staff(request)
    manual, clouds_yaml = ManualTargetForm(), CloudsYamlForm()
    if request.method == "GET":
        return _entry_page(request, manual, clouds_yaml)
    if request.POST.get("source") == "yaml":
        form = clouds_yaml = CloudsYamlForm(request.POST, request.FILES)
        if not form.is_valid():
            return _entry_page(request, manual, form, status=400)
        entries, source = form.cleaned_data["clouds"], form.cleaned_data["source"]
    else:
        form = manual = ManualTargetForm(request.POST)
        if not form.is_valid():
            return _entry_page(request, form, clouds_yaml, status=400)
        entries, source = {"master": form.entry()}, BY_HAND
    try:
        prepared = prepare(entries, list(entries), source)
    except CloudsYamlError as error:
        form.add_error(None, str(error))
        return _entry_page(request, manual, clouds_yaml, status=400)
    draft = _tested_draft(prepared, source)
    if not all(cloud["ok"] for cloud in draft["clouds"].values()):
        return _entry_page(request, manual, clouds_yaml, results=_results(draft))
    _, _, problem = _preview(draft, _default_form(draft).choices())  # the models' validation, before any choice
    if problem:
        form.add_error(None, problem)
        return _entry_page(request, manual, clouds_yaml, status=400)
    _store_draft(request, draft)
    return redirect("sync:connect_review")


def _tested_draft(prepared: dict[str, Prepared], source: str) -> dict:
    """The prepared clouds with their connection test: checks, and the regions of their catalog."""
    defaults, clouds = Defaults.load(), {}
    for cloud, entry in prepared.items():
        tested = probe(Target(name=cloud, **entry.fields).to_policy(defaults))
        checks = [[check.what, check.state, check.detail] for check in tested.checks]
        clouds[cloud] = {
            "fields": entry.fields, "regions": entry.regions, "notes": entry.notes,
            "catalog": tested.regions, "checks": checks, "ok": tested.ok,
        }  # fmt: skip
    return {"source": source, "clouds": clouds}


def _results(draft: dict) -> list[dict]:
    """The connection tests as the pages show them: per cloud, its Keystone URL and its checks."""
    return [
        {
            "cloud": cloud, "auth_url": tested["fields"]["auth_url"], "ok": tested["ok"],
            "checks": [{"what": what, "state": state, "detail": detail} for what, state, detail in tested["checks"]],
        }
        for cloud, tested in draft["clouds"].items()
    ]  # fmt: skip


# -- step 2: choose, see what would change, save -----------------------------------------------------------


def _default_form(draft: dict, data=None, saving: bool = False) -> ConnectChoicesForm:
    catalogs = {cloud: tested["catalog"] for cloud, tested in draft["clouds"].items()}
    return ConnectChoicesForm(data, catalogs=catalogs, demo=MasterSettings.demo_in_use(), saving=saving)


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def connect_review(request):
    """The choices and what saving does; Save writes it and queues the first status refresh."""
    _require_staff(request)
    draft = _load_draft(request)
    if draft is None:
        messages.info(request, "Test a connection first: a tested connection is kept for an hour.")
        return redirect("sync:connect")
    action = request.POST.get("action", "preview")
    form = _default_form(draft, request.POST if request.method == "POST" else None, saving=action == "save")
    if action == "save" and form.is_valid():
        if form.demo and not request.user.has_perm("sync.delete_target"):
            raise PermissionDenied("Replacing the demo configuration needs the permission to delete targets.")
        try:
            _connect(draft, form.choices(), request.user)
        except CloudsYamlError as error:
            form.add_error(None, str(error))
        else:
            _drop_draft(request)
            messages.success(
                request,
                f"Connected: master region {form.choices().master_region}. The statuses of every region are "
                "being refreshed; this page fills in when they are.",
            )
            return redirect("sync:overview")
    changes, notes, problem = _preview(draft, form.choices())
    context = {"form": form, "results": _results(draft), "changes": changes, "notes": notes, "problem": problem}
    if request.htmx:
        return render(request, "sync/_connect_changes.html", context)
    return render(request, "sync/connect_review.html", context, status=400 if action == "save" else 200)


@login_required
@require_POST
def connect_cancel(request):
    _require_staff(request)
    _drop_draft(request)
    messages.info(request, "The tested connection was dropped; nothing was saved.")
    return redirect("sync:connect")


def _preview(draft: dict, choices: Choices) -> tuple[list[str], list[str], str]:
    """(changes, notes, "") of saving with these choices, or ([], [], why it cannot be saved); nothing changes."""
    try:
        done = _connect(draft, choices, None, dry_run=True)
    except CloudsYamlError as error:
        return [], [], str(error)
    return done.changes, done.notes, ""


def _connect(draft: dict, choices: Choices, user, dry_run: bool = False) -> CloudImport:
    """Write the connection in one transaction (rolled back in a dry run): the demo configuration removed when it
    is in use, the targets and regions imported, the master settings set, the first status refresh queued."""
    done = CloudImport(draft["source"], user=user, username=user.get_username() if user else "")
    try:
        with transaction.atomic():
            demo = MasterSettings.demo_in_use()
            if demo:
                _remove_demo(done)
            done.run(_chosen(draft, choices, done.notes), master=choices.master_cloud)
            _set_master_settings(done, choices.master_region, reset=demo)
            if dry_run:
                raise _DryRun
            RefreshRequest.queue([], requested_by=done.username)
    except _DryRun:
        pass
    return done


def _chosen(draft: dict, choices: Choices, notes: list[str]) -> dict[str, Prepared]:
    """Each cloud to import (the master one first: its regions come first in the preferable order) with the
    regions ticked (the master region always), and the others ignored."""
    prepared = {}
    for cloud in sorted(draft["clouds"], key=lambda name: name != choices.master_cloud):
        tested = draft["clouds"][cloud]
        catalog, ticked = tested["catalog"], choices.regions[cloud]
        name = "master" if cloud == choices.master_cloud else cloud
        stored = Target.objects.filter(name=name).values_list("ignore_regions", flat=True).first() or ""
        ignored = [r for r in csv_items(stored) if r not in catalog] + [r for r in catalog if r not in ticked]
        notes.extend(
            f"cloud {cloud}: region {region} is not in its catalog (no Glance there): left out"
            for region in tested["regions"]
            if region not in catalog
        )
        fields = {**tested["fields"], "ignore_regions": ", ".join(ignored)}
        prepared[cloud] = Prepared(fields=fields, regions=ticked, notes=tested["notes"])
    return prepared


def _remove_demo(done: CloudImport) -> None:
    """The demo's targets, regions and checksum decisions (each deletion audited), and every status computed
    from them."""
    doomed = {
        "targets": list(Target.objects.all()),
        "regions": list(Region.objects.select_related("target")),
        "checksum decisions": list(ChecksumDecision.objects.select_related("target")),
    }
    for kind, objects in doomed.items():
        for obj in objects:
            AuditEntry.record(done.user, obj, "delete", username=done.username)
        if objects:
            done.changes.append(f"delete the demo's {kind}: {', '.join(str(obj) for obj in objects)}")
    Target.objects.all().delete()  # its regions and decisions with it
    counts = [model.objects.count() for model in (RegionSnapshot, ImageState, StatusRefresh)]
    for model in (ImageState, RegionSnapshot, StatusRefresh):
        model.objects.all().delete()
    done.changes.append(
        f"delete the demo's statuses: {counts[0]} region snapshot(s), {counts[1]} image status(es), "
        f"{counts[2]} status refresh(es)"
    )
    # Refreshes of the demo not started yet are given up: the first refresh of the new configuration is queued
    # (and shown) on its own.
    RefreshRequest.objects.filter(started_at__isnull=True, finished_at__isnull=True).update(
        finished_at=timezone.now(), result="given up: the demo configuration was replaced"
    )


def _set_master_settings(done: CloudImport, master_region: str, reset: bool) -> None:
    main = MasterSettings.objects.filter(pk=1).first()
    created = main is None
    main = MasterSettings.load() if created else main
    wanted = {"master_region": master_region, "cloud": "openstack", "demo": False}
    if reset:  # the demo's run settings go with it
        wanted |= {"max_children": 1, "default_dry_run": False, "images_dir": ""}
    changed = [key for key, value in wanted.items() if getattr(main, key) != value]
    for key, value in wanted.items():
        setattr(main, key, value)
    if created or changed:
        main.full_clean()
        main.save()
        done.record(main, "create" if created else "change", changed)
