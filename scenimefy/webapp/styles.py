"""The styles as the page shows them: whether each can run on this server, and the words for it.

A style's fast variant (``Style.lite``, e.g. ``shinkai`` -> ``shinkai-lite``) is not a choice of
its own in the selector: it is offered as the **Fast** option of the Image and Video tabs and
used by the Live tab, when its weights can run here. The Styles panel lists every style,
variants included, with where its weights come from (for whoever runs the server).
"""

from __future__ import annotations

from dataclasses import dataclass

from scenimefy.hub import styles as registry

PANEL_TITLE = "Styles: where their weights come from"  # the operator's panel on the page


@dataclass(frozen=True)
class StyleState:
    """Whether a style can run on this server, in words for users and for whoever runs it."""

    name: str
    title: str
    status: str  # "ready", "downloadable" (fetched on first use) or "unavailable"
    why: str  # unavailable: the reason in a user's words ("" otherwise)
    operator: str  # the Styles panel / log line: where the weights come from, how to add them
    fast: str | None = None  # the style's fast (lite) variant when that can run here
    variant_of: str | None = None  # for a fast variant: the style it was distilled from

    @property
    def runnable(self) -> bool:
        return self.status != "unavailable"


def _operator_advice(style: registry.Style) -> str:
    name = style.name
    advice = f"start the app with `--weights {name}=PATH` or set `{registry.env_var(name)}=PATH`"
    if registry.is_released(style):
        advice = f"run `scenimefy download {name}` once with internet access, or {advice}"
    if style.lite_of:  # the authors released no lite model: only distilled folders
        return advice + " (PATH: a distilled lite translator folder, docs/lite.md, or a Hub repo id)"
    return advice + " (PATH: a translator folder, an authors' `*_net_G.pth` file or a Hub repo id)"


def style_state(name: str) -> StyleState:
    style = registry.get_style(name)
    status = registry.style_status(name)
    source = registry.style_source(name)
    if status == "ready":
        return StyleState(name, style.title, "ready", "", f"ready (`{source}`)", variant_of=style.lite_of)
    if status == "downloadable":
        operator = f"downloads on first use (`{source}`)"
        return StyleState(name, style.title, "downloadable", "", operator, variant_of=style.lite_of)
    if registry.is_released(style):
        why = "this server has not downloaded its weights and cannot download them now (it has no internet access)"
        reason = "its weights are not in the local cache and downloads are disabled or the Hub is unreachable"
    else:
        why = "no weights for it have been published yet, and this server has none of its own"
        reason = "no weights found (nothing published or cached)"
    operator = f"not available: {reason}; {_operator_advice(style)}"
    return StyleState(name, style.title, "unavailable", why, operator, variant_of=style.lite_of)


def style_states() -> dict[str, StyleState]:
    """Every registered style (fast variants too), the authors' Shinkai first; each style whose
    fast variant can run here names it in ``fast``."""
    known = registry.styles()
    states = {name: style_state(name) for name in sorted(known, key=lambda n: (n != "shinkai", n))}
    for name, state in states.items():
        lite = known[name].lite
        if lite in states and states[lite].runnable and state.variant_of is None:
            states[name] = StyleState(**{**state.__dict__, "fast": lite})
    return states


def selectable(states: dict[str, StyleState]) -> dict[str, StyleState]:
    """The styles the selector offers: fast variants are an option of their style, not a style."""
    return {name: s for name, s in states.items() if s.variant_of is None}


def default_style(states: dict[str, StyleState]) -> str:
    """The style the page opens on: shinkai when it can run, else the first one that can, else shinkai."""
    order = sorted(selectable(states), key=lambda n: (n != "shinkai", n))
    return next((n for n in order if states[n].runnable), order[0] if order else "shinkai")


def style_choices(states: dict[str, StyleState] | None = None) -> list[tuple[str, str]]:
    states = selectable(states or style_states())
    labels = {"ready": "", "downloadable": " (downloads on first use)", "unavailable": " (not available)"}
    return [(f"{s.title}{labels[s.status]}", name) for name, s in states.items()]


def unavailable_message(name: str, states: dict[str, StyleState]) -> str:
    """The sentence a user reads when ``name`` cannot run: what happened, and what to do in the app."""
    state = states[name]
    others = [s.title for s in selectable(states).values() if s.runnable and s.name != name]
    if others:
        todo = f"Choose {' or '.join(others)} instead."
    else:
        todo = (
            "No style can run on this server at the moment. If you run this server, open "
            f'"{PANEL_TITLE}" below (the same lines are in the server\'s log) for the commands that add '
            "the weights; otherwise, please come back later."
        )
    return f"The {state.title} style cannot be used: {state.why}. {todo}"


def style_note(name: str, states: dict[str, StyleState]) -> str:
    state = states.get(name)
    if state is None:
        return "Choose a style."
    fast = " A fast model of it is available (the Fast option, and the Live tab)." if state.fast else ""
    if state.status == "ready":
        return f"**{state.title}**: ready.{fast}"
    if state.status == "downloadable":
        return (
            f"**{state.title}**: ready; its weights download the first time it is used, so that result takes "
            f"longer.{fast}"
        )
    return f"**Not available.** {unavailable_message(name, states)}"


def styles_panel(states: dict[str, StyleState]) -> str:
    """The Styles panel: every style and, for whoever runs the server, how to add missing weights."""
    lines = []
    for s in states.values():
        variant = f", the fast variant of `{s.variant_of}`" if s.variant_of else ""
        lines.append(f"- **{s.title}** (`{s.name}`{variant}): {s.operator}")
    return "\n".join(lines)


def fast_style(name: str, states: dict[str, StyleState]) -> str | None:
    """The fast variant that can run for ``name`` here (None when it has none or cannot run)."""
    state = states.get(name)
    return state.fast if state is not None and state.runnable else None
