/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Cockpit page of guestkeeper: everything comes from org.guestkeeper1 on the system bus
 * (docs/org.guestkeeper1.5.rst). The properties arrive by PropertiesChanged; the lists are
 * re-read when a run moves on (State, GuestsDone, GuestsFailed) and on RunFinished. */
"use strict";

(function () {
    const _ = cockpit.gettext;
    const BUS = "org.guestkeeper1";
    const PATH = "/org/guestkeeper1";
    const IFACE = "org.guestkeeper1.Manager";
    const NEED_ADMIN = _("Administrative access is needed to preserve, restore or cancel");

    const model = {
        guests: [], // ListGuests: (uri, uuid, name, state, outcome)
        plan: [], // Plan: (uri, uuid, name, steps, persistent, [(key, value, source)])
        summary: null, // PlanSummary
        runs: [], // LastRuns(false)
        readError: null,
        actionError: null,
        finished: null, // the last RunFinished seen: {kind, done, failed}
        acting: false,
        running: null, // guestkeeperd owns its name: null until the bus says
    };
    let client = null;
    let proxy = null;
    let permission = null;

    /* --- DOM helpers: text only goes through textContent --- */

    function h(tag, attrs, ...children) {
        const el = document.createElement(tag);
        for (const [k, v] of Object.entries(attrs || {})) {
            if (v === undefined || v === null || v === false)
                continue;
            if (k === "class")
                el.className = v;
            else if (k.startsWith("on"))
                el.addEventListener(k.substring(2), v);
            else if (k === "width")
                el.style.width = v; /* CSSOM, allowed by Cockpit's CSP (a style attribute is not) */
            else
                el.setAttribute(k, v === true ? "" : v);
        }
        for (const c of children.flat(Infinity)) {
            if (c === undefined || c === null || c === false)
                continue;
            el.append(typeof c === "string" || typeof c === "number" ? String(c) : c);
        }
        return el;
    }

    function label(text, color, attrs) {
        return h("span", { ...attrs, class: "pf-c-label" + (color ? " pf-m-" + color : "") },
                 h("span", { class: "pf-c-label__content" }, text));
    }

    const ALERT_ICON = { danger: "✖", warning: "⚠", info: "ℹ", success: "✔" };

    function alert(variant, title, body, attrs) {
        const extra = attrs && attrs.class ? " " + attrs.class : "";
        return h("div", { ...attrs, class: "pf-c-alert pf-m-inline pf-m-" + variant + extra },
                 h("div", { class: "pf-c-alert__icon", "aria-hidden": "true" }, ALERT_ICON[variant]),
                 h("p", { class: "pf-c-alert__title" },
                   h("span", { class: "pf-screen-reader" }, variant + " alert: "), title),
                 body ? h("div", { class: "pf-c-alert__description" }, body) : null);
    }

    function card(title, attrs, ...body) {
        return h("section", { ...attrs, class: "pf-c-card gk-card" },
                 h("div", { class: "pf-c-card__title" }, h("h2", { class: "pf-c-title pf-m-lg" }, title)),
                 h("div", { class: "pf-c-card__body" }, body));
    }

    function descriptionList(rows) {
        return h("dl", { class: "pf-c-description-list pf-m-horizontal pf-m-auto-fit gk-dl" },
                 rows.filter(r => r).map(([term, value, id]) =>
                     h("div", { class: "pf-c-description-list__group" },
                       h("dt", { class: "pf-c-description-list__term" },
                         h("span", { class: "pf-c-description-list__text" }, term)),
                       h("dd", { class: "pf-c-description-list__description" },
                         h("div", { class: "pf-c-description-list__text", id }, value)))));
    }

    /* --- formatting --- */

    function duration(usec) {
        const s = usec / 1e6;
        if (s < 1)
            return cockpit.format(_("$0 ms"), Math.round(usec / 1000));
        if (s < 60)
            return cockpit.format(_("$0 s"), s.toFixed(1));
        return cockpit.format(_("$0 min $1 s"), Math.floor(s / 60), Math.round(s % 60));
    }

    function when(usec) {
        return usec ? new Date(usec / 1000).toLocaleString() : "—";
    }

    function bytes(n) {
        if (n < 0)
            return _("unknown");
        const units = ["B", "KiB", "MiB", "GiB", "TiB"];
        let i = 0;
        while (n >= 1024 && i < units.length - 1) {
            n /= 1024;
            i++;
        }
        return (i ? n.toFixed(1) : n) + " " + units[i];
    }

    const STATE_COLOR = {
        idle: "green", preserving: "blue", restoring: "blue", preserved: "orange", starting: null, stopping: null,
    };
    const GUEST_STATE_COLOR = { running: "green", paused: "orange", shutoff: null, saved: "blue", unreachable: "red" };
    const OUTCOME_COLOR = {
        saving: "blue", "shutting-down": "blue", restoring: "blue", saved: "green", shutdown: "green",
        poweroff: "orange", restored: "green", recovered: "green", failed: "red", lost: "red", skipped: null,
        waiting: "orange",
    };

    /* The way out of a conflict, as guestkeeperctl and docs/migration.md give it. */
    function conflictFix(line) {
        if (line.includes("libvirt-guests")) {
            return [h("p", null, _("Retire it without touching a guest, as root:")),
                h("pre", { class: "gk-code" }, "guestkeeperctl import-libvirt-guests --takeover"),
                h("p", null, _("It stops libvirt-guests without its stop action and disables it. " +
                               "Do not stop it with systemctl: its stop action shuts every running guest down."))];
        }
        const m = line.match(/^(.*qemu\.conf): (auto_shutdown_\w+)/);
        if (m) {
            /* libvirt's daemon reads qemu.conf when it starts; restarting it leaves the guests running. */
            return [h("p", null, cockpit.format(_("Set $0 to \"none\" in $1, restart libvirt's daemon (virtqemud.service instead where the modular daemons run; the guests keep running), then let guestkeeperd check again:"),
                                                m[2], m[1])),
                h("pre", { class: "gk-code" }, "systemctl try-restart libvirtd.service\nguestkeeperctl reload")];
        }
        return null;
    }

    /* --- data --- */

    function call(method, args) {
        return client.call(PATH, IFACE, method, args || []);
    }

    let refreshing = false;
    let refreshAgain = false;

    function refresh() {
        if (!proxy || !proxy.valid)
            return;
        if (refreshing) {
            refreshAgain = true;
            return;
        }
        refreshing = true;
        Promise.all([call("ListGuests"), call("Plan"), call("PlanSummary"), call("LastRuns", [false])])
                .then(([guests, plan, summary, runs]) => {
                    model.guests = guests[0];
                    model.plan = plan[0];
                    model.summary = summary;
                    model.runs = runs[0];
                    model.readError = null;
                })
                .catch(e => {
                    model.readError = e.message || String(e);
                })
                .finally(() => {
                    refreshing = false;
                    render();
                    if (refreshAgain) {
                        refreshAgain = false;
                        refresh();
                    }
                });
    }

    /* --- actions --- */

    const ACTIONS = {
        preserve: {
            method: "PreserveGuests",
            button: _("Rehearse shutdown"),
            title: _("Rehearse a host shutdown?"),
            body: () => cockpit.format(cockpit.ngettext(
                "guestkeeperd saves, shuts down or powers off the $0 running guest now, as it would at a host " +
                "shutdown (see the plan). It stays down until you restore it.",
                "guestkeeperd saves, shuts down or powers off the $0 running guests now, as it would at a host " +
                "shutdown (see the plan). They stay down until you restore them.", model.plan.length),
                                       model.plan.length),
            confirm: _("Preserve the guests"),
            danger: true,
        },
        restore: {
            method: "RestoreGuests",
            button: _("Restore guests"),
            title: _("Restore the guests?"),
            body: () => _("guestkeeperd starts every guest it stopped and recorded again, and ends a maintenance " +
                          "hold."),
            confirm: _("Restore"),
            danger: false,
        },
        cancel: {
            method: "Cancel",
            button: _("Cancel run"),
            title: _("Cancel the run under way?"),
            body: () => _("A rehearsal starts no further step and brings back the guests it stopped; a restore " +
                          "run starts no further guest (the others stay recorded)."),
            confirm: _("Cancel the run"),
            danger: true,
        },
    };

    function closeModal() {
        document.getElementById("gk-modal-root").replaceChildren();
    }

    function confirmAction(name) {
        const a = ACTIONS[name];
        const confirm = h("button", {
            class: "pf-c-button " + (a.danger ? "pf-m-danger" : "pf-m-primary"), type: "button", id: "gk-confirm",
            onclick: () => {
                closeModal();
                model.acting = true;
                model.actionError = null;
                render();
                call(a.method)
                        .catch(e => {
                            model.actionError = { action: a.button, name: e.name || "", message: e.message || String(e) };
                        })
                        .finally(() => {
                            model.acting = false;
                            render();
                        });
            },
        }, a.confirm);
        const modal = h("div", { class: "pf-c-backdrop" },
                        h("div", { class: "gk-bullseye" },
                          h("div", {
                              class: "pf-c-modal-box pf-m-sm", role: "dialog", "aria-modal": "true",
                              "aria-labelledby": "gk-modal-title", id: "gk-modal",
                          },
                            h("header", { class: "pf-c-modal-box__header" },
                              h("h1", { class: "pf-c-modal-box__title", id: "gk-modal-title" }, a.title)),
                            h("div", { class: "pf-c-modal-box__body" }, a.body()),
                            h("footer", { class: "pf-c-modal-box__footer" }, confirm,
                              h("button", {
                                  class: "pf-c-button pf-m-link", type: "button", id: "gk-dismiss", onclick: closeModal,
                              }, _("Cancel"))))));
        modal.addEventListener("keydown", ev => {
            if (ev.key === "Escape")
                closeModal();
        });
        document.getElementById("gk-modal-root").replaceChildren(modal);
        confirm.focus();
    }

    /* --- rendering --- */

    function running(state) {
        return state === "preserving" || state === "restoring";
    }

    function renderAlerts() {
        const out = [];
        if (model.actionError) {
            out.push(alert("danger", cockpit.format(_("$0 failed"), model.actionError.action),
                           h("p", null, model.actionError.message,
                             model.actionError.name ? h("span", { class: "gk-source" }, " (" + model.actionError.name + ")") : null),
                           { id: "gk-action-error" }));
        }
        if (model.readError)
            out.push(alert("danger", _("Reading from guestkeeperd failed"), h("p", null, model.readError)));
        if (model.finished) {
            const f = model.finished;
            out.push(alert(f.failed ? "danger" : "success",
                           cockpit.format(f.kind === "preserve" ? _("Preserve run finished: $0 done, $1 failed")
                               : _("Restore run finished: $0 done, $1 failed"), f.done, f.failed),
                           null, { id: "gk-run-finished", "data-kind": f.kind }));
        }
        for (const line of proxy.Conflicts || []) {
            out.push(alert("warning", _("Conflict: another mechanism also acts on the guests at shutdown"),
                           [h("p", null, line), conflictFix(line)], { class: "gk-conflict" }));
        }
        if (proxy.Held) {
            out.push(alert("warning", _("Maintenance hold"),
                           h("p", null, _("The preserved guests stay down, across restarts and reboots, until " +
                                          "they are restored.")), { id: "gk-held" }));
        }
        const waiting = proxy.RestoreWaiting || [];
        if (waiting.length) {
            out.push(alert("info", cockpit.format(cockpit.ngettext("$0 guest waits to be restored",
                                                                   "$0 guests wait to be restored", waiting.length),
                                                  waiting.length),
                           h("ul", { class: "gk-list" },
                             waiting.map(([, , name, why]) => h("li", null, h("strong", null, name), ": " + why))),
                           { id: "gk-restore-waiting" }));
        }
        return out;
    }

    function renderStatus() {
        const state = proxy.State || "";
        const total = proxy.GuestsTotal || 0;
        const done = proxy.GuestsDone || 0;
        const failed = proxy.GuestsFailed || 0;
        const pct = Math.round((proxy.Progress || 0) * 100);
        const inFlight = proxy.GuestsInFlight || [];
        const lastRun = proxy.LastRun || "";
        const admin = permission && permission.allowed === true;
        const busy = running(state);

        const progress = lastRun
            ? h("div", {
                class: "pf-c-progress pf-m-sm" + (failed ? " pf-m-danger" : !busy && total ? " pf-m-success" : ""),
                id: "gk-progress",
            },
                h("div", { class: "pf-c-progress__description", id: "gk-counts" },
                  cockpit.format(_("$0 of $1 done, $2 failed"), done, total, failed)),
                h("div", { class: "pf-c-progress__status", "aria-hidden": "true" },
                  h("span", { class: "pf-c-progress__measure" }, pct + "%")),
                h("div", {
                    class: "pf-c-progress__bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
                    "aria-valuenow": String(pct), "aria-labelledby": "gk-counts",
                }, h("div", { class: "pf-c-progress__indicator", width: pct + "%" })))
            : null;

        const button = (name, enabled, primary) => h("button", {
            class: "pf-c-button " + (primary ? "pf-m-primary" : "pf-m-secondary"), type: "button", id: "gk-" + name,
            disabled: !admin || !enabled || model.acting || !proxy.valid,
            title: admin ? null : NEED_ADMIN,
            onclick: () => confirmAction(name),
        }, ACTIONS[name].button);
        const idle = state === "idle" || state === "preserved";

        return card(_("Status"), { id: "gk-status" },
                    descriptionList([
                        [_("State"), label(state || _("unknown"), STATE_COLOR[state], { id: "gk-state" })],
                        [_("Shutdown inhibitor"),
                            proxy.InhibitorHeld ? label(_("held"), "green") : label(_("not held"), "orange"),
                            "gk-inhibitor"],
                        [_("Conflicts"),
                            (proxy.Conflicts || []).length ? label(String(proxy.Conflicts.length), "orange")
                                : _("none"), "gk-conflicts"],
                        [_("Current or last run"), lastRun ? (busy ? cockpit.format(_("$0 (under way)"), lastRun)
                            : lastRun) : _("none since guestkeeperd started"), "gk-last-run-kind"],
                        [_("Version"), proxy.Version || ""],
                    ]),
                    progress,
                    inFlight.length
                        ? h("ul", { class: "gk-list gk-in-flight", id: "gk-in-flight" },
                            inFlight.map(([, , name, what]) => h("li", null, label(what, "blue"), " ", name)))
                        : null,
                    h("div", { class: "gk-actions" },
                      button("preserve", idle, true), button("restore", idle, false), button("cancel", busy, false)),
                    admin ? null : h("p", { class: "gk-hint", id: "gk-need-admin" }, NEED_ADMIN + "."));
    }

    function setting(settings, key) {
        const s = settings.find(([k]) => k === key);
        return s ? { value: s[1], source: s[2] } : null;
    }

    function cell(field, title, ...content) {
        /* One child: on a narrow window the cell is a grid of its label and this. */
        return h("td", { "data-label": title, "data-field": field }, h("div", null, content));
    }

    function valueWithSource(s, unit) {
        if (!s)
            return "—";
        return [s.value === "" ? _("none") : s.value + (unit || ""), h("span", { class: "gk-source" }, s.source)];
    }

    function renderGuests() {
        const plan = new Map(model.plan.map(p => [p[0] + " " + p[1], p]));
        const multiUri = new Set(model.guests.map(g => g[0])).size > 1;
        const cols = [_("Name"), _("State"), _("Last outcome"), _("At shutdown"), _("Action"),
            _("Shutdown timeout"), _("Order"), _("Shutdown mode"), _("Start delay")];
        const guests = model.guests.slice().sort((a, b) => a[2].localeCompare(b[2]) || a[0].localeCompare(b[0]));
        const rows = guests.map(([uri, uuid, name, state, outcome]) => {
            const p = plan.get(uri + " " + uuid);
            const settings = p ? p[5] : [];
            const notSaved = setting(settings, "not-saved");
            const metaError = setting(settings, "metadata-error");
            const estimate = setting(settings, "save-estimate");
            let steps = "—";
            if (p) {
                steps = [p[3] ? p[3].split(",").join(" → ") : h("span", { class: "gk-warning-text" }, _("left running")),
                    estimate ? h("span", { class: "gk-source" }, cockpit.format(_("save ≈ $0 s"), estimate.value)) : null,
                    notSaved ? h("span", { class: "gk-warning-text gk-block" }, cockpit.format(_("not saved: $0"), notSaved.value)) : null,
                    metaError ? h("span", { class: "gk-danger-text gk-block" }, metaError.value) : null];
            }
            return h("tr", { "data-guest": name, "data-uuid": uuid },
                     cell("name", cols[0], h("strong", null, name), multiUri ? h("span", { class: "gk-source" }, uri) : null),
                     cell("state", cols[1], label(state, GUEST_STATE_COLOR[state])),
                     cell("outcome", cols[2], outcome ? label(outcome, OUTCOME_COLOR[outcome]) : "—"),
                     cell("steps", cols[3], steps),
                     cell("action", cols[4], valueWithSource(setting(settings, "action"))),
                     cell("shutdown-timeout", cols[5], valueWithSource(setting(settings, "shutdown-timeout"), " s")),
                     cell("order", cols[6], valueWithSource(setting(settings, "order"))),
                     cell("shutdown-mode", cols[7], valueWithSource(setting(settings, "shutdown-mode"))),
                     cell("start-delay", cols[8], valueWithSource(setting(settings, "start-delay"), " s")));
        });

        let summary = null;
        const s = model.summary;
        if (s) {
            const [estimate, deadline, saves, inTime, dropped, warning] = s;
            const running = model.plan.length;
            summary = [h("p", { id: "gk-plan-summary", class: "gk-hint" },
                         cockpit.format(cockpit.ngettext("A host shutdown now: $0 running guest; ",
                                                         "A host shutdown now: $0 running guests; ", running),
                                        running),
                         cockpit.format(cockpit.ngettext("$0 save planned, ", "$0 saves planned, ", saves), saves),
                         cockpit.format(_("estimated $0 of a $1 deadline; $2 expected in time, $3 dropped."),
                                        duration(estimate), duration(deadline), inTime, dropped)),
                warning ? alert("warning", _("The saves may not fit in the deadline"), h("p", null, warning),
                                { id: "gk-plan-warning" }) : null];
        }

        return card(cockpit.format(_("Guests ($0)"), model.guests.length), { id: "gk-guests-card" },
                    summary,
                    model.guests.length
                        ? h("table", { class: "pf-c-table pf-m-compact gk-table", id: "gk-guests", role: "grid" },
                            h("thead", null, h("tr", null, cols.map(c => h("th", { scope: "col" }, c)))),
                            h("tbody", null, rows))
                        : h("p", { class: "gk-hint" }, _("No guests: libvirt lists none on the watched connections.")));
    }

    function renderRun(run) {
        const [id, kind, reason, requestedBy, started, finished, dur, cancelled, total, done, failed, unreachable,
            guests] = run;
        const cols = [_("Name"), _("Outcome"), _("Duration"), _("Written"), _("Steps"), _("Error")];
        const title = cockpit.format(kind === "preserve" ? _("Last preserve run: $0") : _("Last restore run: $0"),
                                     reason);
        return h("div", { class: "gk-run", "data-run-kind": kind, "data-run-id": id },
                 h("h3", { class: "pf-c-title pf-m-md" }, title, " ",
                   failed ? label(cockpit.format(_("$0 failed"), failed), "red") : label(_("no failure"), "green"),
                   cancelled ? [" ", label(_("cancelled"), "orange")] : null),
                 descriptionList([
                     [_("Started"), when(started)],
                     [_("Finished"), when(finished)],
                     [_("Duration"), duration(dur)],
                     [_("Requested by"), requestedBy],
                     [_("Guests"), cockpit.format(_("$0 of $1 done, $2 failed"), done, total, failed)],
                 ]),
                 unreachable.map(u => alert("danger", _("Connection unreachable"), h("p", null, u))),
                 guests.length
                     ? h("table", { class: "pf-c-table pf-m-compact gk-table", role: "grid" },
                         h("thead", null, h("tr", null, cols.map(c => h("th", { scope: "col" }, c)))),
                         h("tbody", null, guests.map(([, uuid, name, outcome, gdur, written, error, steps]) =>
                             h("tr", { "data-guest": name, "data-uuid": uuid, class: error ? "gk-failed" : null },
                               cell("name", cols[0], h("strong", null, name)),
                               cell("outcome", cols[1], label(outcome, OUTCOME_COLOR[outcome])),
                               cell("duration", cols[2], duration(gdur)),
                               cell("written", cols[3], bytes(written)),
                               cell("steps", cols[4], steps.map(([step, , sdur, serr]) =>
                                   h("span", { class: "gk-block" + (serr ? " gk-danger-text" : "") },
                                     step + " " + duration(sdur) + (serr ? ": " + serr : "")))),
                               cell("error", cols[5], error ? h("span", { class: "gk-danger-text" }, error) : "—")))))
                     : h("p", { class: "gk-hint" }, _("No guest in this run.")));
    }

    function renderRuns() {
        /* The newest first. */
        const runs = model.runs.slice().sort((a, b) => b[4] - a[4]);
        return card(_("Last runs"), { id: "gk-last-runs" },
                    runs.length ? runs.map(renderRun) : h("p", { class: "gk-hint" }, _("No run recorded yet.")));
    }

    function render() {
        const app = document.getElementById("gk-app");
        if (!proxy)
            return;
        app.setAttribute("aria-busy", "false");
        if (!proxy.valid || model.running === false) {
            app.replaceChildren(
                h("h1", { class: "pf-c-title pf-m-xl" }, _("Guest shutdown")),
                alert("danger", _("guestkeeperd is not running"),
                      h("p", null, _("Start it with: systemctl enable --now guestkeeper.service")),
                      { id: "gk-not-running" }));
            return;
        }
        app.replaceChildren(
            h("h1", { class: "pf-c-title pf-m-xl" }, _("Guest shutdown")),
            h("p", { class: "gk-hint" },
              _("guestkeeper saves, shuts down or powers off the libvirt guests when the host shuts down, " +
                "and brings them back at the next boot.")),
            h("div", { class: "gk-alerts" }, renderAlerts()),
            renderStatus(),
            renderGuests(),
            renderRuns());
    }

    /* A client and proxy of their own for each guestkeeperd: one made while the name had no
     * owner stays empty when the daemon starts later. */
    function connect() {
        if (client)
            client.close();
        client = cockpit.dbus(BUS, { bus: "system", superuser: "try" });
        client.addEventListener("owner", (ev, owner) => {
            model.running = !!owner;
            render();
        });
        proxy = client.proxy(IFACE, PATH);
        proxy.addEventListener("changed", (ev, changed) => {
            if ("State" in changed || "GuestsDone" in changed || "GuestsFailed" in changed)
                refresh();
            render();
        });
        proxy.addEventListener("RunFinished", (ev, kind, done, failed) => {
            model.finished = { kind, done, failed };
            refresh();
            render();
        });
        proxy.wait(() => {
            render();
            refresh();
        });
    }

    function init() {
        permission = cockpit.permission({ admin: true });
        permission.addEventListener("changed", render);
        cockpit.dbus("org.freedesktop.DBus", { bus: "system" }).subscribe(
            { path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus", member: "NameOwnerChanged", arg0: BUS },
            (path, iface, signal, [name, oldOwner, newOwner]) => {
                model.running = !!newOwner;
                if (newOwner)
                    connect();
                render();
            });
        connect();
    }

    document.addEventListener("DOMContentLoaded", init);
}());
