"""What a study found: the best trials, parameter importances, and the best trial as a preset file."""

from __future__ import annotations

from pathlib import Path

import yaml

from rlgen.config import nest_overrides
from rlgen.errors import InputError
from rlgen.tune.space import Param, overrides_of


def _completed(study) -> list:
    import optuna

    return [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]


def show_study(study, params: list[Param], top: int = 5) -> list[str]:
    """The study's state, its best trials (value, values, run directory) and parameter importances."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    done = _completed(study)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)
    lines = [f"study {study.study_name}: {len(done)} complete, {pruned} pruned, {len(trials)} trials in all"]
    sign = 1 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1
    for t in sorted(done, key=lambda t: sign * t.value)[:top]:
        # every value the trial ran with; those of a field outside the given space as Optuna stored them
        known = {p.name: p.value_of(t.params) for p in params if p.name in t.params}
        values = {name: known.get(name, value) for name, value in t.params.items()}
        lines.append(f"  trial {t.number}: {t.value:.2f}  {values}  ({t.user_attrs.get('run_dir', '')})")
    if len(done) >= 2:
        try:
            importances = optuna.importance.get_param_importances(study)
            lines.append("importances: " + ", ".join(f"{k} {v:.2f}" for k, v in importances.items()))
        except (RuntimeError, ValueError) as exc:  # e.g. every trial picked the same values
            lines.append(f"importances: not computable yet ({exc})")
    return lines


def export_best(study, spec, path: str | Path) -> Path:
    """The best trial's search-space values (with the study's fixed --set values) as a YAML mapping of
    config fields, for ``rlgen train-ALGO ENV --config FILE`` (applied over the same preset)."""
    done = _completed(study)
    if not done:
        raise InputError(f"study {study.study_name!r} has no complete trial yet; run `rlgen tune` first")
    best = study.best_trial
    params = spec.params()
    missing = [p.name for p in params if p.name not in best.params]
    if missing:
        raise InputError(f"the best trial of {study.study_name!r} has no value for {', '.join(missing)}: "
                         "pass the --space the study was run with")
    values = overrides_of(params, {p.name: p.value_of(best.params) for p in params})
    fields = nest_overrides({**study.user_attrs.get("fixed", {}), **spec.overrides, **values})
    path = Path(path)
    train = (f"rlgen train {spec.algo} --data {spec.task}" if spec.generative
             else f"rlgen train-{spec.algo} {spec.task}")
    header = (f"# rlgen tune {spec.algo} {spec.task}: study {study.study_name}, trial {best.number}, "
              f"score {best.value:.2f}\n# over the preset {study.user_attrs.get('preset') or spec.task}; "
              f"train with: {train} --config {path.name}\n")
    path.write_text(header + yaml.safe_dump(fields, sort_keys=True))
    return path
