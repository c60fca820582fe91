"""The report: hand-made run results with known numbers in, tables, plots and deltas out."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
from scipy import stats

from kdbench.cli import main
from kdbench.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TeacherConfig
from kdbench.report import (
    METRIC_LABELS,
    REFERENCES,
    ReportInputError,
    analyse,
    history_frame,
    load_references,
    load_runs,
    pareto_mask,
    reference_deltas,
    runs_frame,
    unique_runs,
    write_report,
)
from kdbench.report.plots import dataset_figures
from kdbench.report.tables import dataset_table

LQ = DataConfig(params={"quality": "lq"})
CIFAR = DataConfig(name="cifar100", params={"root": "/data/cifar-100-python"})
DUAL = TeacherConfig("dual-branch", run="t" * 12)
COST = {"resnet10t": (4_923_514, 89_930_752), "dual-branch": (22_399_682, 333_674_496)}
COST |= {"resnet8x4": (1_233_540, 177_000_000), "resnet32x4": (7_433_860, 1_083_000_000)}

# synthff lq, test AUC by seed (so the table's numbers can be computed by hand)
VANILLA_AUC = {0: 0.60, 1: 0.62, 2: 0.64}  # mean 62, std 2
KD_AUC = {0: 0.70, 1: 0.73, 2: 0.73}  # mean 72, std sqrt(3); +10, +11, +9 over vanilla
FITNETS_AUC = {0: 0.57, 1: 0.64}  # seed 2 failed; mean 60.5: -1.5 below vanilla's 62


def record(
    student: str,
    method: str = "vanilla",
    *,
    seed: int = 0,
    auc: float | None = None,
    acc: float | None = None,
    data: DataConfig = LQ,
    teacher: TeacherConfig | None = None,
    epochs: int = 6,
    **cost_extra,
) -> dict:
    """A finished run with these test metrics (AUC given: a detector, whose frame ACC is a
    little below AUC and video AUC a little above)."""
    cfg = RunConfig(
        seed=seed,
        student=ModelConfig(student),
        teacher=teacher,
        method=MethodConfig(method),
        data=data,
    )
    cfg.train.epochs = epochs
    if auc is None:
        test = {"acc": acc}
    else:
        test = {"acc": auc - 0.05 if acc is None else acc, "auc": auc, "video_auc": auc + 0.01}
    return finished(cfg, test, **cost_extra)


def finished(cfg: RunConfig, test: dict, **cost_extra) -> dict:
    """A run JSON as the harness writes it: test metrics at the best (last) epoch, a history
    whose validation curve rises to the same values, the student's params and FLOPs."""
    epochs = cfg.train.epochs
    history = [
        {"epoch": e, "val": {k: v - 0.01 * (epochs - e) for k, v in test.items()}, "test": test}
        for e in range(1, epochs + 1)
    ]
    params, flops = COST[cfg.student.name]
    return {
        "run_id": cfg.run_id(),
        "status": "done",
        "config": asdict(cfg),
        "history": history,
        "best": {"epoch": epochs, "val": history[-1]["val"], "test": test},
        "last": {"epoch": epochs, "val": history[-1]["val"], "test": test},
        "cost": {"student": {"params": params, "flops": flops, **cost_extra}},
        "finished": f"2026-11-24T00:00:{cfg.seed:02d}+00:00",
    }


def failed(student: str, method: str, seed: int, error: str) -> dict:
    cfg = RunConfig(seed=seed, student=ModelConfig(student), method=MethodConfig(method), data=LQ)
    cfg.teacher = DUAL
    return {"run_id": cfg.run_id(), "status": "failed", "config": asdict(cfg), "error": error}


def synthff_runs() -> list[dict]:
    runs = [record("dual-branch", auc=0.90, acc=0.85)]
    runs += [record("resnet10t", seed=s, auc=v) for s, v in VANILLA_AUC.items()]
    runs += [record("resnet10t", "kd", seed=s, auc=v, teacher=DUAL) for s, v in KD_AUC.items()]
    runs += [
        record("resnet10t", "fitnets", seed=s, auc=v, teacher=DUAL) for s, v in FITNETS_AUC.items()
    ]
    runs.append(failed("resnet10t", "fitnets", 2, "RuntimeError: boom\nTraceback: ..."))
    # the same cell, another recipe: its own row, never a fourth seed of kd
    runs.append(record("resnet10t", "kd", seed=0, auc=0.80, teacher=DUAL, epochs=20))
    return runs


def cifar_runs() -> list[dict]:
    teacher = TeacherConfig("resnet32x4", run="c" * 12)
    return [
        record("resnet32x4", acc=0.7900, data=CIFAR),  # published T 79.42
        record("resnet8x4", acc=0.7250, data=CIFAR),  # published S 72.50
        record("resnet8x4", "kd", acc=0.7500, data=CIFAR, teacher=teacher),  # 73.33
        record("resnet8x4", "crd", acc=0.7560, data=CIFAR, teacher=teacher),  # 75.51
    ]


@pytest.fixture(scope="module")
def lq():
    records = synthff_runs()
    return analyse("synthff lq", runs_frame(records), history_frame(records), None)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    summary = write_report(synthff_runs() + cifar_runs(), out, references=REFERENCES)
    return out, summary


def row(groups: pd.DataFrame, method: str) -> pd.Series:
    """The student row of ``method`` (the teacher's own run is ``vanilla`` too)."""
    (match,) = groups.index[(groups["method_key"] == method) & (groups["role"] != "teacher")]
    return groups.loc[match]


# --- numbers ---------------------------------------------------------------------------------


def test_groups_have_hand_computed_mean_std_and_n(lq):
    g = lq.groups
    assert lq.metric == "auc"  # what the runs selected their best epoch by
    vanilla, kd, fitnets = row(g, "vanilla"), row(g, "kd {train.epochs=6}"), row(g, "fitnets")
    assert (vanilla["n"], kd["n"], fitnets["n"]) == (3, 3, 2)
    assert vanilla["auc"] == pytest.approx(62.0)
    assert vanilla["auc_std"] == pytest.approx(2.0)
    assert kd["auc"] == pytest.approx(72.0)
    assert kd["auc_std"] == pytest.approx(math.sqrt(3))
    assert fitnets["auc_std"] == pytest.approx(math.sqrt(2 * 3.5**2))  # 57, 64 around 60.5
    assert kd["params_m"] == pytest.approx(4.923514)
    assert kd["gflops"] == pytest.approx(0.089930752)
    teacher = g.iloc[0]
    assert (teacher["role"], teacher["student"], teacher["n"]) == ("teacher", "dual-branch", 1)
    assert math.isnan(teacher["auc_std"])  # one seed: no spread, not zero


def test_gain_and_paired_test_over_seeds(lq):
    kd, fitnets = row(lq.groups, "kd {train.epochs=6}"), row(lq.groups, "fitnets")
    assert kd["delta"] == pytest.approx(10.0)
    expected = stats.ttest_rel([70, 73, 73], [60, 62, 64]).pvalue
    assert (kd["p_value"], kd["test"]) == (pytest.approx(expected), "paired t")
    assert fitnets["delta"] == pytest.approx(-1.5)
    # fitnets has seeds 0 and 1 only: paired with vanilla's seeds 0 and 1
    expected = stats.ttest_rel([57, 64], [60, 62]).pvalue
    assert fitnets["p_value"] == pytest.approx(expected)
    assert math.isnan(row(lq.groups, "vanilla")["delta"])


def test_welch_when_seeds_do_not_pair():
    records = [record("resnet10t", seed=s, auc=v) for s, v in VANILLA_AUC.items()]
    records += [
        record("resnet10t", "kd", seed=s + 10, auc=v, teacher=DUAL) for s, v in KD_AUC.items()
    ]
    report = analyse("synthff lq", runs_frame(records), history_frame(records), None)
    kd = row(report.groups, "kd")
    expected = stats.ttest_ind([70, 73, 73], [60, 62, 64], equal_var=False).pvalue
    assert (kd["p_value"], kd["test"]) == (pytest.approx(expected), "Welch t")


def test_a_different_recipe_is_its_own_row_not_another_seed(lq):
    longer = row(lq.groups, "kd {train.epochs=20}")
    assert (longer["n"], longer["auc"]) == (1, pytest.approx(80.0))
    assert row(lq.groups, "kd {train.epochs=6}")["n"] == 3


def test_a_key_older_runs_lack_does_not_split_a_group():
    runs = [record("resnet10t", seed=s, auc=v) for s, v in VANILLA_AUC.items()]
    del runs[0]["config"]["train"]["select"]  # written before train.select existed
    report = analyse("synthff lq", runs_frame(runs), history_frame(runs), "auc")
    assert report.groups["n"].tolist() == [3]


def test_per_kind_auc_columns_are_named_after_the_kind():
    runs = [record("resnet10t", auc=0.6), record("resnet10t", "kd", auc=0.7, teacher=DUAL)]
    runs[1]["best"]["test"] |= {"auc_spatial": 0.8, "auc_frequency": 0.55}
    report = analyse("synthff lq", runs_frame(runs), history_frame(runs), None)
    columns = dataset_table(report).columns
    assert columns[-3:] == ["AUC frequency (%)", "AUC spatial (%)", "Δ AUC"]
    assert row(report.groups, "kd")["auc_spatial"] == pytest.approx(80.0)
    assert dataset_table(report, terminal=True).columns[-3:] == [
        "AUC (%)",
        "video AUC (%)",
        "Δ AUC",
    ]


def test_pareto_mask_on_a_known_set():
    cost = [1.0, 1.0, 2.0, 3.0, 3.0, 4.0, 0.5, math.nan, 2.0]
    score = [70, 60, 80, 80, 85, 84, 50, 99, 80]
    # (1,60) loses to (1,70); (3,80) to (2,80); (4,84) to (3,85); NaN never counts;
    # the two identical points (2,80) both stay
    expected = [True, False, True, False, True, False, True, False, True]
    assert pareto_mask(cost, score).tolist() == expected


def test_pareto_front_of_the_table(lq):
    on_front = set(lq.groups.loc[lq.groups["pareto_gflops"], "label"])
    # 6 epochs: 90 at 0.334 GFLOPs, kd's 72 at 0.090 beats the other students at 0.090;
    # kd's 20-epoch run is alone on its own front (no 6-epoch run is compared with it)
    assert on_front == {"teacher: dual-branch", "kd {train.epochs=6}", "kd {train.epochs=20}"}


# --- files -----------------------------------------------------------------------------------


def test_report_folder_has_pages_tables_and_plots(written):
    out, summary = written
    assert (summary.runs, summary.finished, summary.failed) == (15, 14, 1)
    assert summary.datasets == ["cifar100", "synthff lq"]
    readme = (out / "README.md").read_text()
    page = (out / "index.html").read_text()
    for kind in ("vs-gflops", "vs-params", "bars", "curves"):
        assert f"plots/synthff-lq-{kind}.png" in readme
        assert f'src="plots/synthff-lq-{kind}.png"' in page
    assert "<table>" in page and "fvcore counts one multiply-add as one flop" in readme
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 15 and (runs["status"] == "failed").sum() == 1


def test_failed_runs_are_listed_with_their_reason(written):
    out, _ = written
    readme = (out / "README.md").read_text()
    assert "## Failed runs (1)" in readme
    assert "RuntimeError: boom" in readme and "Traceback" not in readme


@pytest.mark.parametrize("kind", ["vs-gflops", "vs-params", "bars", "curves"])
def test_plot_files_are_valid_images(written, kind):
    plots = written[0] / "plots"
    image = matplotlib.image.imread(plots / f"synthff-lq-{kind}.png")
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 500
    assert image[..., :3].std() > 0.05  # not a blank canvas
    svg = ET.parse(plots / f"synthff-lq-{kind}.svg").getroot()
    assert svg.tag.endswith("svg") and len(svg.findall(".//{*}path")) > 20


def test_figures_have_the_expected_axes(lq):
    figures = dataset_figures(lq)
    cost = figures["vs-gflops"].axes[0]
    assert (cost.get_xlabel(), cost.get_ylabel()) == (
        "GFLOPs per image (log scale)",
        "test AUC (%)",
    )
    assert cost.get_xscale() == "log"
    assert figures["vs-params"].axes[0].get_xlabel() == "parameters (M, log scale)"
    (front,) = [line for line in cost.lines if line.get_label() == "Pareto front"]
    assert front.get_xdata().tolist() == pytest.approx([0.089930752, 0.333674496])
    assert front.get_ydata().tolist() == pytest.approx([72.0, 90.0])  # the 6-epoch front
    bars = figures["bars"].axes[0]
    assert bars.get_xlabel() == "test AUC (%)"
    heights = [p.get_width() for p in bars.patches]
    assert heights[:3] == pytest.approx([90.0, 62.0, 80.0])  # teacher, vanilla, best student
    curves = figures["curves"].axes[0]
    assert (curves.get_xlabel(), curves.get_ylabel()) == ("epoch", "validation AUC (%)")
    kd_curve = [line for line in curves.lines if line.get_label() == "kd {train.epochs=6}"]
    assert kd_curve[0].get_ydata()[-1] == pytest.approx(72.0)  # last epoch, mean over seeds


def parse_markdown(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    split = [[unescape(c.strip()) for c in line.strip("|").split(" | ")] for line in lines]
    return [dict(zip(split[0], cells, strict=True)) for cells in split[2:]]


def unescape(cell: str) -> str:
    return re.sub(r"^\*\*(.*)\*\*$", r"\1", cell).replace(r"\*", "*")


def parse_latex(text: str) -> list[dict]:
    body = text.split(r"\midrule")[1].split(r"\bottomrule")[0]
    header = text.split(r"\toprule")[1].split(r"\midrule")[0]
    names = [clean_latex(c) for c in header.strip().removesuffix(r"\\").split(" & ")]
    rows = [line.removesuffix(r"\\").split(" & ") for line in body.strip().splitlines()]
    return [dict(zip(names, (clean_latex(c) for c in cells), strict=True)) for cells in rows]


def clean_latex(cell: str) -> str:
    cell = re.sub(r"\\textbf\{(.*)\}$", r"\1", cell.strip())
    symbols = ((r"$\pm$", "±"), (r"$\Delta$", "Δ"), ("--", "—"), ("$-$", "-"), (r"\dag{}", "†"))
    for latex, text in symbols:
        cell = cell.replace(latex, text)
    cell = re.sub(r"\\([_%{}])", r"\1", cell)
    return re.sub(r"\$\^\{(\*+)\}\$", r"\1", cell)


def numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"[+-]?\d+\.\d+", cell)]


def test_markdown_latex_and_csv_round_trip_the_same_numbers(written):
    tables = written[0] / "tables"
    md = parse_markdown((tables / "synthff-lq.md").read_text())
    tex = parse_latex((tables / "synthff-lq.tex").read_text())
    frame = pd.read_csv(tables / "synthff-lq.csv")
    assert md == tex
    assert len(md) == len(frame) == 5
    for shown, full in zip(md, frame.to_dict("records"), strict=True):
        for metric in ("acc", "auc", "video_auc"):
            mean, std = full[metric], full[f"{metric}_std"]
            spread = [] if math.isnan(std) else [round(std, 2)]
            spread += [round(full["auc_ci95"], 2)] if metric == "auc" and spread else []
            assert numbers(shown[f"{METRIC_LABELS[metric]} (%)"]) == [round(mean, 2), *spread]
        assert shown["n"] == str(full["n"])
        assert shown["conv."] == f"{full['converged']}/{full['n']} †"  # every curve still rises
        assert numbers(shown["params (M)"]) == [round(full["params_m"], 2)]
        assert numbers(shown["GFLOPs"]) == [round(full["gflops"], 3)]
        delta = [full[c] for c in ("delta_auc", "delta_auc_ci95") if not math.isnan(full[c])]
        assert numbers(shown["Δ AUC"]) == [round(d, 2) for d in delta]
    kd = next(r for r in md if r["method"] == "kd {train.epochs=6}")
    # paired differences 10, 11, 9: std 1, so the interval is t(0.975, 2) / √3
    assert (kd["AUC (%)"], kd["Δ AUC"]) == ("72.00 ± 1.73 [±4.30]", "+10.00** [±2.48]")
    fitnets = next(r for r in tex if r["method"] == "fitnets")
    # two seeds: t(0.975, 1) = 12.71 times 4.95 / √2; Δ pairs seeds 0, 1 (-3, +2: std 3.54)
    assert (fitnets["AUC (%)"], fitnets["Δ AUC"]) == ("60.50 ± 4.95 [±44.47]", "-1.50 [±31.77]")


def test_the_terminal_table_shows_the_markdown_tables_cells(written):
    """What `kdbench demo` prints is the report's table (85.71, not 0.857): the same cells,
    in the columns marked for the terminal (no teacher, no AUC per kind of fake)."""
    from rich.console import Console

    from kdbench.report.render import to_rich

    out, summary = written
    console = Console(record=True, width=400)
    console.print(to_rich(summary.tables["synthff lq"]))
    text = console.export_text().splitlines()
    header = next(line for line in text if line.startswith("┃"))
    names = [cell.strip() for cell in header.strip("┃").split("┃")]
    body = [line for line in text if line.startswith("│")]
    shown = [dict(zip(names, (c.strip() for c in line.strip("│").split("│")), strict=True))
             for line in body]  # fmt: skip
    md = parse_markdown((out / "tables" / "synthff-lq.md").read_text())
    assert [name for name in md[0] if name not in names] == ["teacher"]
    assert shown == [{name: row[name] for name in names} for row in md]
    kd = next(row for row in shown if row["method"] == "kd {train.epochs=6}")
    assert (kd["AUC (%)"], kd["Δ AUC"]) == ("72.00 ± 1.73 [±4.30]", "+10.00** [±2.48]")


def test_a_column_is_one_entry_of_the_column_list(monkeypatch):
    """A new report column is one Column in columns.COLUMNS: from then on it is in the runs
    frame, aggregated per group, shown in every table and written to the CSV."""
    from kdbench.report import columns
    from kdbench.report.render import to_latex, to_markdown, to_rich
    from kdbench.report.tables import table_csv

    memory = columns.Column(
        "memory_mb",
        "memory (MB)",
        lambda g: f"{g['memory_mb']:.0f}",
        run=lambda r: r["cost"]["student"]["memory_mb"],
        group="mean",
    )
    monkeypatch.setattr(columns, "COLUMNS", [*columns.COLUMNS, memory])
    records = [record("resnet10t", seed=s, auc=0.6, memory_mb=100 + 2 * s) for s in (0, 1)]
    runs = runs_frame(records)
    report = analyse("synthff lq", runs, history_frame(records), None)
    table = dataset_table(report)
    assert list(runs["memory_mb"]) == [100, 102]
    assert table.rows[0][table.columns.index("memory (MB)")] == "101"
    assert list(table_csv(report)["memory_mb"]) == [101]
    assert "memory (MB)" in to_markdown(table) and "memory (MB)" in to_latex(table)
    assert "memory (MB)" in [column.header for column in to_rich(table).columns]


def test_best_student_per_column_is_bold(written):
    text = (written[0] / "tables" / "synthff-lq.md").read_text()
    bold = re.findall(r"\| \*\*(.+?)\*\* ", text)
    # kd {train.epochs=20} has the best metrics but no 20-epoch vanilla run: the best Δ is kd's
    assert bold == ["75.00", "80.00", "81.00", r"+10.00\*\* [±2.48]"]
    assert r"\textbf{80.00}" in (written[0] / "tables" / "synthff-lq.tex").read_text()


def with_eer(run: dict, eer: float) -> dict:
    run["best"]["test"] = run["best"]["test"] | {"eer": eer, "ap": 1 - eer}
    return run


def test_eer_is_bold_where_smallest_and_stays_off_the_terminal():
    runs = [
        with_eer(record("resnet10t", seed=0, auc=0.60), 0.40),
        with_eer(record("resnet10t", "kd", seed=0, auc=0.70, teacher=DUAL), 0.30),
        with_eer(record("resnet10t", "fitnets", seed=0, auc=0.65, teacher=DUAL), 0.35),
    ]
    report = analyse("synthff lq", runs_frame(runs), history_frame(runs), None)
    table = dataset_table(report)
    ap, eer = table.columns.index("AP (%)"), table.columns.index("EER (%)")
    kd = next(i for i, cells in enumerate(table.rows) if cells[0].startswith("kd"))
    assert (kd, eer) in table.bold and (kd, ap) in table.bold  # 30.00 is the best EER
    assert [table.rows[i][eer] for i in range(3) if (i, eer) in table.bold] == ["30.00"]
    assert "EER (%)" not in dataset_table(report, terminal=True).columns


# --- references ------------------------------------------------------------------------------


def test_repdistiller_reference_table_is_complete():
    refs = load_references(REFERENCES)
    repdistiller = refs[refs["source"] == "repdistiller_cifar100.csv"]
    pairs = repdistiller[repdistiller["method"] != "vanilla"]
    assert len(pairs) == 13 * 4 + 7 * 5  # KD, FitNet, AT, CRD for 13 pairs; SP … NST for 7
    by_method = pairs.groupby("method").size().to_dict()
    assert by_method == {m: 13 for m in ("kd", "fitnets", "at", "crd")} | {
        m: 7 for m in ("sp", "vid", "rkd", "pkt", "nst")
    }
    dkd = refs[(refs["method"] == "dkd") & (refs["student"] == "resnet8x4")]
    assert dkd["published"].tolist() == [76.32]
    crd = pairs[(pairs["student"] == "resnet8x4") & (pairs["method"] == "crd")]
    assert crd["published"].tolist() == [75.51]
    teachers = refs[(refs["method"] == "vanilla") & (refs["student"] == "wrn_40_2")]
    assert teachers["published"].tolist() == [75.61]  # three pairs, one value


def test_reference_deltas_match_on_names_and_flag_outside_tolerance(written):
    deltas = pd.read_csv(written[0] / "tables" / "references.csv", keep_default_na=False)
    by_method = {(d["student"], d["method"]): d for d in deltas.to_dict("records")}
    assert set(by_method) == {
        ("resnet32x4", "vanilla"),
        ("resnet8x4", "vanilla"),
        ("resnet8x4", "kd"),
        ("resnet8x4", "crd"),
    }
    kd = by_method["resnet8x4", "kd"]
    assert (kd["ours"], kd["published"]) == (pytest.approx(75.0), 73.33)
    assert (kd["delta"], kd["within"]) == (pytest.approx(1.67), False)
    crd = by_method["resnet8x4", "crd"]
    assert (crd["delta"], crd["within"]) == (pytest.approx(0.09), True)
    assert by_method["resnet32x4", "vanilla"]["delta"] == pytest.approx(-0.42)
    readme = (written[0] / "README.md").read_text()
    assert (
        "| cifar100 | resnet32x4 | resnet8x4 | kd | ACC | 1 | 75.00 | 73.33 | +1.67 | **no** |"
        in readme
    )


def test_conflicting_published_values_are_an_error(tmp_path):
    (tmp_path / "bad.csv").write_text(
        "dataset,metric,teacher,student,T,S,kd\n"
        "cifar100,acc,resnet56,resnet20,72.34,69.06,70.66\n"
        "cifar100,acc,resnet110,resnet20,74.31,69.10,70.67\n"
    )
    with pytest.raises(ReportInputError, match="two different published values"):
        load_references(tmp_path)


def test_reference_matching_ignores_other_datasets():
    records = [record("resnet8x4", acc=0.72)]  # synthff, not cifar100
    report = analyse("synthff lq", runs_frame(records), history_frame(records), None)
    assert reference_deltas(report.groups, load_references(REFERENCES), 1.0).empty


# --- input and the command line --------------------------------------------------------------


def write_runs(folder: Path, records: list[dict]) -> Path:
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    for r in records:
        (folder / "runs" / f"{r['run_id']}.json").write_text(json.dumps(r))
    return folder


def test_same_run_id_from_two_folders_counts_once(tmp_path):
    runs = synthff_runs()
    a = write_runs(tmp_path / "a", runs[:4])
    b = write_runs(tmp_path / "b", runs[2:4])
    records, skipped = load_runs([a, b])
    assert len(records) == 6 and skipped == []
    unique, duplicates = unique_runs(records)
    assert (len(unique), duplicates) == (4, 2)
    assert sorted(r["run_id"] for r in unique) == sorted(r["run_id"] for r in runs[:4])


def test_latency_column_appears_when_recorded():
    records = [record("resnet10t", auc=0.6, latency_ms=1.5), record("dual-branch", auc=0.9)]
    report = analyse("synthff lq", runs_frame(records), history_frame(records), None)
    table = dataset_table(report)
    assert "latency (ms)" in table.columns
    column = table.columns.index("latency (ms)")
    assert sorted(r[column] for r in table.rows) == ["1.50", "—"]


def test_cli_writes_the_report_and_says_where(tmp_path, capsys):
    results = write_runs(tmp_path / "results", synthff_runs())
    assert main(["report", str(results), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "10 finished runs, 1 failed" in err and str(tmp_path / "out" / "index.html") in err
    assert (tmp_path / "out" / "tables" / "synthff-lq.tex").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON file"),
        ('{"hello": 1}', "not a kdbench run result"),
        ('{"run_id": "x", "status": "done"}', "a finished run without config, best, cost"),
    ],
)
def test_a_bad_run_file_is_one_line_and_the_report_goes_on(tmp_path, capsys, content, message):
    results = write_runs(tmp_path / "results", synthff_runs()[:2])
    (results / "runs" / "broken.json").write_text(content)
    assert main(["report", str(results), "--out", str(tmp_path / "out")]) == 0
    warning, done = capsys.readouterr().err.strip().splitlines()
    assert warning.startswith("warning: ") and message in warning and "broken.json" in warning
    assert "report: 2 finished runs" in done
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "## Files left out (1)" in readme and "broken.json" in readme


def test_metric_option_applies_where_recorded(tmp_path, capsys):
    results = write_runs(tmp_path / "results", synthff_runs() + cifar_runs())
    assert main(["report", str(results), "--metric", "top5"]) == 2
    assert "no dataset records the metric 'top5'" in capsys.readouterr().err
    records = synthff_runs() + cifar_runs()
    runs, history = runs_frame(records), history_frame(records)
    by_dataset = {name: part for name, part in runs.groupby("dataset")}
    assert (
        analyse("synthff lq", by_dataset["synthff lq"], history, "video_auc").metric == "video_auc"
    )
    assert analyse("cifar100", by_dataset["cifar100"], history, "video_auc").metric == "acc"


def test_folder_without_runs_is_one_clear_line(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no run results" in err


def test_never_overwrites_a_readme_it_did_not_write(tmp_path):
    (tmp_path / "README.md").write_text("# my project\n")
    with pytest.raises(ReportInputError, match="not a kdbench report"):
        write_report(synthff_runs(), tmp_path)
    assert (tmp_path / "README.md").read_text() == "# my project\n"


def test_demo_ends_by_writing_its_report_to_results_demo(tmp_path, capsys, monkeypatch):
    """``kdbench demo`` with training replaced by writing each planned run's JSON; one run
    left no JSON at all (killed), which the report must survive."""

    def fake_run_in_process(runs, results, progress=None, log=print):
        records = [finished(cfg, {"acc": 0.6, "auc": 0.7}) for cfg in runs]
        write_runs(results, records[:-1])
        return records

    monkeypatch.setattr("kdbench.sweep.runner.run_in_process", fake_run_in_process)
    assert main(["demo", "--results", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    err = captured.err
    readme = (tmp_path / "demo" / "README.md").read_text()
    written = len(list((tmp_path / "runs").glob("*.json")))
    assert f"{written} runs from" in readme and "## synthff lq" in readme
    assert f"report: {written} finished runs, 1 dataset(s)" in err
    assert str(tmp_path / "demo" / "index.html") in err
    assert "One seed per method: an illustration, not evidence" in err
    assert "kdbench demo --preset paper" in err
    out = captured.out  # the report's table, as in its README: points, two decimals
    assert "kdbench demo (demo): synthff lq" in out and "70.00" in out and "0.700" not in out


def test_model_label_names_switched_on_flags_and_the_branch():
    from kdbench.report.labels import model_label

    flags = {"lfs": True, "aux_heads": True, "image_size": 64, "spatial": "resnet18"}
    assert model_label({"name": "dual-branch", "kwargs": flags}) == "dual-branch+aux_heads+lfs"
    single = {"branch": "spatial", "lfs": False}
    assert model_label({"name": "dual-branch", "kwargs": single}) == "dual-branch (spatial only)"
    assert model_label({"name": "resnet10t"}) == "resnet10t"


def test_a_long_legend_goes_below_the_axes_and_a_short_one_beside():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from kdbench.report.figstyle import LEGEND_BESIDE, legend

    cases = [(LEGEND_BESIDE, "", False), (LEGEND_BESIDE + 5, "", True)]
    cases += [(3, " [frequency_weight=4.0,homogenize=pcgrad,spatial_weight=4.0]", True)]
    for lines, params, below in cases:
        fig = Figure(figsize=(4, 3), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        for k in range(lines):
            ax.plot([0, 1], [k, k], label=f"a rather long method label number {k}{params}")
        legend(fig, [ax])
        fig.canvas.draw()
        box, axes_box = fig.legends[0].get_window_extent(), ax.get_window_extent()
        assert bool(box.y1 <= axes_box.y0) is below
        assert bool(box.x0 >= axes_box.x1) is not below


def test_the_bar_axis_shows_every_seed_and_no_error_bar_passes_100(lq):
    from matplotlib.collections import LineCollection, PathCollection

    figures = dataset_figures(lq)
    bars = figures["bars"].axes[0]
    left, right = bars.get_xlim()
    (seeds,) = [c for c in bars.collections if isinstance(c, PathCollection)]
    dots = seeds.get_offsets()[:, 0]
    assert left <= dots.min() and dots.max() <= right
    for errors in [c for c in bars.collections if isinstance(c, LineCollection)]:
        assert max(x for segment in errors.get_segments() for x, _ in segment) <= 100.0
    ticks = figures["curves"].axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)  # whole epochs


def test_a_small_gflops_count_keeps_two_significant_digits():
    from kdbench.report.columns import small

    cell = small("gflops")
    assert [cell({"gflops": v}) for v in (0.0899, 0.00123, 0.323)] == ["0.090", "0.0012", "0.323"]


def test_a_plain_vanilla_run_of_the_teachers_model_is_a_baseline_not_a_teacher():
    from kdbench.report.frames import runs_frame

    teacher = record("dual-branch", auc=0.90, seed=0)
    other = record("dual-branch", auc=0.80, seed=1)  # the same model trained alone, untaught
    student = record(
        "resnet10t", "kd", auc=0.7, teacher=TeacherConfig("dual-branch", run=teacher["run_id"])
    )
    frame = runs_frame([teacher, other, student])
    roles = dict(zip(frame["run_id"], frame["role"], strict=True))
    assert roles == {
        teacher["run_id"]: "teacher",
        other["run_id"]: "baseline",
        student["run_id"]: "distilled",
    }
