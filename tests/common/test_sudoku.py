"""Solver, generator, CSV loaders, augmentation, canonical forms and splits of studies.data.sudoku,
and the sudoku_data stage that applies them."""

import itertools
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import plan
from pipeline.codehash import ROOT
from pipeline.params import ParamsError
from pipeline.spec import Context, Params
from stages import RECIPES
from stages.common import sudoku_data
from studies.data import sudoku, sudoku_solver

# Well-known hard puzzles and their (unique) published solutions.
FAMOUS = {
    "inkala_2012": (
        "800000000003600000070090200050007000000045700000100030001000068008500010090000400",
        "812753649943682175675491283154237896369845721287169534521974368438526917796318452",
    ),
    "ai_escargot": (
        "100007090030020008009600500005300900010080002600004000300000010040000007007000300",
        "162857493534129678789643521475312986913586742628794135356478219241935867897261354",
    ),
    "easter_monster": (
        "1.......2.9.4...5...6...7...5.9.3.......7.......85..4.7.....6...3...9.8...2.....1",
        "174385962293467158586192734451923876928674315367851249719548623635219487842736591",
    ),
}


def grid(s: str) -> np.ndarray:
    return np.array(sudoku_solver.to_cells(s), dtype=np.uint8)


@pytest.fixture(scope="module")
def generated():
    return sudoku.generate(24, seed=7, progress=False)


# ---------------------------------------------------------------------------- solver
@pytest.mark.parametrize("name", sorted(FAMOUS))
def test_solver_solves_famous_hard_puzzles_uniquely(name):
    puzzle, solution = FAMOUS[name]
    result = sudoku_solver.search(puzzle, limit=2)
    assert result.count == 1
    assert sudoku.to_string(result.solution) == solution
    assert result.guesses > 0  # these need search, not just singles


def test_empty_grid_has_at_least_limit_solutions():
    assert sudoku_solver.count_solutions([0] * 81, limit=2) == 2
    assert sudoku_solver.count_solutions([0] * 81, limit=7) == 7


def test_deadly_rectangle_has_exactly_two_solutions_checked_by_brute_force():
    full = grid(FAMOUS["inkala_2012"][1]).reshape(9, 9)
    rect = next(
        (r1, r2, c1, c2)
        for r1, r2 in itertools.combinations(range(9), 2)
        if r1 // 3 == r2 // 3
        for c1, c2 in itertools.combinations(range(9), 2)
        if c1 // 3 != c2 // 3 and full[r1, c1] == full[r2, c2] and full[r1, c2] == full[r2, c1]
    )
    r1, r2, c1, c2 = rect
    cells = [(r1, c1), (r1, c2), (r2, c1), (r2, c2)]
    puzzle = full.copy()
    for rc in cells:
        puzzle[rc] = 0
    # Independent count: each blank's row and column miss exactly the two rectangle digits.
    digits = {int(full[r1, c1]), int(full[r1, c2])}
    brute = 0
    for values in itertools.product(sorted(digits), repeat=4):
        g = puzzle.copy()
        for rc, v in zip(cells, values, strict=True):
            g[rc] = v
        brute += sudoku.is_valid_solution(g.reshape(81))
    assert brute == 2
    assert sudoku_solver.count_solutions(puzzle.reshape(81), limit=10) == 2


def test_removing_any_given_of_a_minimal_puzzle_gives_several_solutions(generated):
    puzzle = generated["puzzles"][0].tolist()
    for cell in np.flatnonzero(generated["puzzles"][0]):
        fewer = list(puzzle)
        fewer[cell] = 0
        assert sudoku_solver.count_solutions(fewer, limit=2) == 2
        assert sudoku_solver.has_other_solution(puzzle, int(cell), puzzle[cell])


def test_contradictory_puzzles_have_no_solution():
    two_fives = [5, 5] + [0] * 79
    assert sudoku_solver.count_solutions(two_fives) == 0
    # No conflict among givens, but cell (0, 0) has no candidate left: row 0 holds 1-8
    # and column 0 holds 9.
    boxed_in = [0, 1, 2, 3, 4, 5, 6, 7, 8] + [9] + [0] * 71
    assert sudoku_solver.count_solutions(boxed_in) == 0
    assert sudoku_solver.solve(boxed_in) is None


# ---------------------------------------------------------------------------- generator
def test_generated_puzzles_are_unique_hard_and_consistent(generated):
    p, s = generated["puzzles"], generated["solutions"]
    assert p.shape == s.shape == (24, 81) and p.dtype == s.dtype == np.uint8
    assert (generated["givens"] == (p > 0).sum(1)).all()
    assert (generated["givens"] <= 25).all()
    assert sudoku.is_valid_solution(s).all()
    sudoku.check_pairs(p, s)
    for row in p:
        assert sudoku_solver.count_solutions(row, limit=3) == 1
    assert len({row.tobytes() for row in p}) == 24


def test_generation_is_deterministic_and_independent_of_worker_count(generated):
    again = sudoku.generate(6, seed=7, progress=False, workers=2)
    for key in ("puzzles", "solutions", "givens", "rating"):
        assert (again[key] == generated[key][:6]).all()
    other = sudoku.generate(2, seed=8, progress=False)
    assert not (other["puzzles"] == generated["puzzles"][:2]).all()


def test_target_givens_stops_removal_early_for_easier_puzzles():
    easy = sudoku.generate(3, seed=1, max_givens=40, target_givens=36, progress=False)
    assert (easy["givens"] == 36).all()
    assert all(sudoku_solver.count_solutions(row) == 1 for row in easy["puzzles"])


# ---------------------------------------------------------------------------- CSV loading
def write(path, text):
    path.write_text(text)
    return path


def test_load_sudoku_extreme_csv(tmp_path):
    rows = [f"src{i},{q},{a},{7 * i}" for i, (q, a) in enumerate(FAMOUS.values())]
    f = write(tmp_path / "train.csv", "source,question,answer,rating\n" + "\n".join(rows) + "\n")
    data = sudoku.load_csv(f)
    assert data["puzzles"].shape == (3, 81) and data["puzzles"].dtype == np.uint8
    assert sudoku.to_string(data["puzzles"][2]) == FAMOUS["easter_monster"][0]
    assert sudoku.to_string(data["solutions"][0]) == FAMOUS["inkala_2012"][1]
    assert data["rating"].tolist() == [0, 7, 14]
    assert data["givens"].tolist() == [21, 23, 21]


def test_load_enso_csv_with_zero_and_dot_blanks(tmp_path):
    q0, a0 = FAMOUS["inkala_2012"]
    q1, a1 = FAMOUS["ai_escargot"]
    f = write(tmp_path / "s.csv", f"puzzle,solution\n{q0},{a0}\n{q1.replace('0', '.')},{a1}\n")
    data = sudoku.load_csv(f)
    assert (data["puzzles"][0] == grid(q0)).all() and (data["puzzles"][1] == grid(q1)).all()
    assert (data["rating"] == -1).all()
    assert sudoku.load_csv(f, fmt="enso")["solutions"].shape == (2, 81)


@pytest.mark.parametrize(
    "bad_question, bad_answer, message",
    [
        ("8" * 80, None, "row 1 (file line 3) has 80 chars"),
        ("x" + "0" * 80, None, "row 1 (file line 3) has a character"),
        (None, "9" + FAMOUS["inkala_2012"][1][1:], "row 1 (file line 3) solution breaks"),
        (None, "0" + FAMOUS["inkala_2012"][1][1:], "row 1 (file line 3) solution has a blank"),
    ],
)
def test_load_csv_names_the_bad_row(tmp_path, bad_question, bad_answer, message):
    q, a = FAMOUS["inkala_2012"]
    bad = f"{bad_question or q},{bad_answer or a}"
    f = write(tmp_path / "bad.csv", f"puzzle,solution\n{q},{a}\n{bad}\n")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sudoku.load_csv(f)


def test_load_csv_rejects_answer_that_contradicts_givens(tmp_path):
    q, a = FAMOUS["inkala_2012"]
    other = FAMOUS["ai_escargot"][1]  # a valid grid, but not this puzzle's
    f = write(tmp_path / "x.csv", f"source,question,answer,rating\ns,{q},{a},1\ns,{q},{other},2\n")
    with pytest.raises(ValueError, match=r"row 1 .* disagrees with a given"):
        sudoku.load_csv(f)


# ---------------------------------------------------------------------------- augmentation
def test_augmented_pairs_stay_valid_and_unique(generated):
    rng = np.random.default_rng(0)
    p, s = generated["puzzles"][:8], generated["solutions"][:8]
    for _ in range(3):
        ap, asol = sudoku.augment(p, s, rng)
        assert ap.dtype == np.uint8 and ap.shape == p.shape
        assert sudoku.is_valid_solution(asol).all()
        sudoku.check_pairs(ap, asol)
        assert ((ap > 0).sum(1) == (p > 0).sum(1)).all()
        for row in ap:
            assert sudoku_solver.count_solutions(row, limit=3) == 1
        assert (ap != p).any()


def test_augment_uses_every_symmetry_and_is_seeded():
    pos, digit_map = sudoku.augment_indices(2000, np.random.default_rng(1))
    grids = pos.reshape(-1, 9, 9)
    transposed = (grids[:, 0, 1] - grids[:, 0, 0]) % 9 == 0  # moving along a row changes row
    assert 0.4 < transposed.mean() < 0.6
    assert (digit_map[:, 0] == 0).all() and (np.sort(digit_map[:, 1:], 1) == np.arange(1, 10)).all()
    assert len({tuple(row) for row in pos[:, :9]}) > 1000
    again, _ = sudoku.augment_indices(2000, np.random.default_rng(1))
    assert (again == pos).all()


def test_augment_accepts_single_grids_and_torch_tensors():
    torch = pytest.importorskip("torch")
    q, a = (grid(x) for x in FAMOUS["ai_escargot"])
    sp, ss = sudoku.augment(q, a, np.random.default_rng(3))
    assert sp.shape == (81,) and sudoku.is_valid_solution(ss)
    tp, ts = sudoku.augment(torch.tensor(q[None]), torch.tensor(a[None]), np.random.default_rng(3))
    assert tp.dtype == torch.uint8 and (tp.numpy()[0] == sp).all() and (ts.numpy()[0] == ss).all()


def test_is_valid_solution_rejects_broken_grids():
    good = grid(FAMOUS["easter_monster"][1])
    swapped = good.copy()
    swapped[[0, 1]] = swapped[[1, 0]]  # two cells of row 0: columns break
    blank = good.copy()
    blank[40] = 0
    result = sudoku.is_valid_solution(np.stack([good, swapped, blank]))
    assert result.tolist() == [True, False, False]
    assert sudoku.is_valid_solution(good) is True


# ---------------------------------------------------------------------------- splits
def test_split_is_seeded_disjoint_and_drops_duplicates(generated):
    data = {k: np.concatenate([v, v[:5]]) for k, v in generated.items()}  # 5 exact duplicates
    train, val = sudoku.split(data, val_frac=0.25, seed=3)
    keys = lambda d: {row.tobytes() for row in d["puzzles"]}  # noqa: E731
    assert len(train["puzzles"]) + len(val["puzzles"]) == 24
    assert len(val["puzzles"]) == 6 and not keys(train) & keys(val)
    assert len(keys(train)) == len(train["puzzles"])
    for part in (train, val):
        sudoku.check_pairs(part["puzzles"], part["solutions"])
    again, _ = sudoku.split(data, val_frac=0.25, seed=3)
    assert (again["puzzles"] == train["puzzles"]).all()
    other, _ = sudoku.split(data, val_frac=0.25, seed=4)
    assert not (other["puzzles"] == train["puzzles"]).all()


def test_split_subsamples_and_excludes_held_out_puzzles(generated):
    held = generated["puzzles"][:4]
    train, val = sudoku.split(generated, val_frac=0.1, n=10, seed=0, exclude=held)
    assert len(train["puzzles"]) == 9 and len(val["puzzles"]) == 1
    rows = {r.tobytes() for r in np.concatenate([train["puzzles"], val["puzzles"]])}
    assert not rows & {r.tobytes() for r in held}
    with pytest.raises(ValueError, match="only 20 distinct"):
        sudoku.split(generated, n=21, exclude=held)


# ---------------------------------------------------------------------------- canonical forms
def relabel_and_transpose(p, digits, transpose):
    """A grid under the augmentation's digit relabelling (digits[d-1] for d) and transpose."""
    out = np.concatenate([[0], digits])[p]
    return out.reshape(-1, 9, 9).transpose(0, 2, 1).reshape(-1, 81) if transpose else out


def test_canonical_form_is_invariant_to_relabelling_and_transpose_only(generated):
    p = generated["puzzles"][:6]
    rng = np.random.default_rng(0)
    base = sudoku.canonical(p)
    for transpose in (False, True):
        moved = relabel_and_transpose(p, rng.permutation(9) + 1, transpose)
        assert (moved != p).any()
        assert (sudoku.canonical(moved) == base).all()
    swapped_rows = p.reshape(-1, 9, 9)[:, [1, 0, 2, 3, 4, 5, 6, 7, 8]].reshape(-1, 81)  # not one of them
    assert (sudoku.canonical(swapped_rows) != base).any(1).all()
    assert len({r.tobytes() for r in base}) == 6  # different puzzles stay different
    assert (sudoku.canonical(p, chunk=4) == base).all()  # chunking changes nothing


def test_split_drops_puzzles_equivalent_under_relabelling_and_transpose(generated):
    twins = relabel_and_transpose(generated["puzzles"][:3], np.arange(9, 0, -1), True)
    data = {
        "puzzles": np.concatenate([generated["puzzles"], twins]),
        "solutions": np.concatenate(
            [generated["solutions"], relabel_and_transpose(generated["solutions"][:3], np.arange(9, 0, -1), True)]
        ),
    }
    train, val = sudoku.split(data, n_val=4, seed=0)
    assert len(train["puzzles"]) + len(val["puzzles"]) == 24 and len(val["puzzles"]) == 4
    kept = sudoku.canonical(np.concatenate([train["puzzles"], val["puzzles"]]))
    assert len({r.tobytes() for r in kept}) == 24


# ---------------------------------------------------------------------------- the train-file / test-file protocol
def write_extreme(path, puzzles, solutions):
    rows = [
        f"src,{sudoku.to_string(q)},{sudoku.to_string(a)},{i % 5}"
        for i, (q, a) in enumerate(zip(puzzles, solutions, strict=True))
    ]
    return write(path, "source,question,answer,rating\n" + "\n".join(rows) + "\n")


def write_enso(path, puzzles, solutions):
    rows = [f"{sudoku.to_string(q, blank='0')},{sudoku.to_string(a)}" for q, a in zip(puzzles, solutions, strict=True)]
    return write(path, "puzzle,solution\n" + "\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def files(tmp_path_factory, generated):
    """A train file of 18 puzzles, 2 of them relabelled/transposed copies of test puzzles,
    and a test file of 6 (the generated set's last 6)."""
    d = tmp_path_factory.mktemp("csv")
    p, s = generated["puzzles"], generated["solutions"]
    digits = np.array([3, 1, 2, 6, 4, 5, 9, 7, 8])
    tp = np.concatenate([p[:16], relabel_and_transpose(p[18:20], digits, True)])
    ts = np.concatenate([s[:16], relabel_and_transpose(s[18:20], digits, True)])
    return {
        "extreme": (write_extreme(d / "train.csv", tp, ts), write_extreme(d / "test.csv", p[18:], s[18:])),
        "enso": (write_enso(d / "train_enso.csv", tp, ts), write_enso(d / "test_enso.csv", p[18:], s[18:])),
    }


def content_keys(part, canonical=False):
    grids = sudoku.canonical(part["puzzles"]) if canonical else part["puzzles"]
    return {r.tobytes() for r in grids}


@pytest.mark.parametrize("fmt", ["extreme", "enso"])
def test_file_splits_subsample_the_train_file_and_keep_the_test_file_whole(files, fmt, generated):
    train_csv, test_csv = files[fmt]
    train, val, test = sudoku.file_splits(
        sudoku.load_csv(train_csv), sudoku.load_csv(test_csv), n=10, n_val=2, n_test=0, seed=5
    )
    assert (len(train["puzzles"]), len(val["puzzles"]), len(test["puzzles"])) == (8, 2, 6)
    assert (test["puzzles"] == generated["puzzles"][18:]).all()  # un-subsampled, in file order
    parts = {"train": train, "val": val, "test": test}
    for canonical in (False, True):  # disjoint by content, and up to relabelling + transpose
        for a, b in itertools.combinations(parts, 2):
            assert not content_keys(parts[a], canonical) & content_keys(parts[b], canonical), (a, b, canonical)
    train_pool = content_keys({"puzzles": generated["puzzles"][:16]})
    assert content_keys(train) | content_keys(val) <= train_pool  # the two test twins never drawn
    for part in parts.values():
        sudoku.check_pairs(part["puzzles"], part["solutions"])


def test_file_splits_subsample_is_seeded_and_the_test_cap_too(files):
    train_file, test_file = (sudoku.load_csv(f) for f in files["extreme"])
    a = sudoku.file_splits(train_file, test_file, n=10, n_val=2, n_test=4, seed=5)
    again = sudoku.file_splits(train_file, test_file, n=10, n_val=2, n_test=4, seed=5)
    other = sudoku.file_splits(train_file, test_file, n=10, n_val=2, n_test=4, seed=6)
    for x, y in zip(a, again, strict=True):
        assert (x["puzzles"] == y["puzzles"]).all()
    assert content_keys(a[0]) | content_keys(a[1]) != content_keys(other[0]) | content_keys(other[1])
    assert len(a[2]["puzzles"]) == 4 and content_keys(a[2]) <= content_keys(test_file)
    uncapped = sudoku.file_splits(train_file, test_file, n=10, n_val=2, n_test=0, seed=5)
    assert (uncapped[0]["puzzles"] == a[0]["puzzles"]).all()  # the cap never moves the train subsample
    with pytest.raises(ValueError, match="only 16 distinct remain"):
        sudoku.file_splits(train_file, test_file, n=17, n_val=2, n_test=0, seed=5)
    with pytest.raises(ValueError, match="n_test=7 exceeds the test file's 6"):
        sudoku.file_splits(train_file, test_file, n=10, n_val=2, n_test=7, seed=5)
    with pytest.raises(ValueError, match=r"n_val=10 must be in \[0, 10\)"):
        sudoku.file_splits(train_file, test_file, n=10, n_val=10, n_test=0, seed=5)


def test_load_csv_names_the_file_and_line_of_a_row_with_missing_fields(tmp_path):
    q, a = FAMOUS["inkala_2012"]
    f = write(tmp_path / "short.csv", f"source,question,answer,rating\ns,{q},{a},1\ns,{q},{a},2\ns,{q}\n")
    with pytest.raises(ValueError, match=rf"{f}: row 2 \(file line 4\) has 2 fields, expected 4"):
        sudoku.load_csv(f)


def test_load_csv_names_a_rating_that_is_not_an_integer(tmp_path):
    q, a = FAMOUS["inkala_2012"]
    f = write(tmp_path / "r.csv", f"source,question,answer,rating\ns,{q},{a},1\ns,{q},{a},hard\n")
    with pytest.raises(ValueError, match=r"column 'rating': row 1 \(file line 3\) rating 'hard' is not an integer"):
        sudoku.load_csv(f)


# ---------------------------------------------------------------------------- the sudoku_data stage
def csv_params(tmp_path, train_csv, test_csv, **over) -> Path:
    """A params file holding poh_injection as shipped, reading the two CSVs."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    study = raw["studies"]["poh_injection"]
    study["params"] |= {"sudoku_source": "csv", "sudoku_csv": str(train_csv), "sudoku_test_csv": str(test_csv)}
    study["params"] |= over
    out = tmp_path / "params.yaml"
    out.write_text(yaml.safe_dump({"studies": {"poh_injection": study}}))
    return out


def data_node(params_file):
    return plan.build(params_file, RECIPES).node("poh_injection", "sudoku_data", "base")


def test_sudoku_data_fingerprint_hashes_both_csv_files(tmp_path, files):
    train_csv, test_csv = (tmp_path / "train.csv", tmp_path / "test.csv")
    train_csv.write_bytes(files["extreme"][0].read_bytes())
    test_csv.write_bytes(files["extreme"][1].read_bytes())
    params_file = csv_params(tmp_path, train_csv, test_csv)
    before = data_node(params_file)
    assert set(before.parts["inputs"]) == {str(train_csv), str(test_csv)}
    test_csv.write_bytes(files["enso"][1].read_bytes())  # same puzzles, other bytes
    after = data_node(params_file)
    assert after.fingerprint != before.fingerprint
    assert after.parts["inputs"][str(train_csv)] == before.parts["inputs"][str(train_csv)]
    with pytest.raises(ParamsError, match=r"params.sudoku_test_csv: '.*nowhere.csv' is not a file"):
        data_node(csv_params(tmp_path, train_csv, tmp_path / "nowhere.csv"))


def test_sudoku_data_stage_writes_the_file_protocol_splits(tmp_path, files, generated):
    train_csv, test_csv = files["enso"]
    params_file = csv_params(tmp_path, train_csv, test_csv, n_puzzles=12, n_val=3, n_test=0, data_seed=1)
    node = data_node(params_file)
    out = tmp_path / "out"
    out.mkdir()
    metrics = sudoku_data.run(Context(Params(node.params, "sudoku_data"), out, (), "poh_injection"))
    assert metrics | {"mean_givens": 0} == {
        "n_train": 9, "n_val": 3, "n_test": 6, "n_train_file": 18, "n_test_file": 6, "mean_givens": 0
    }  # fmt: skip
    parts = {}
    for name in ("train", "val", "test"):
        with np.load(out / f"{name}.npz") as f:
            parts[name] = {k: f[k] for k in f.files}
    expected, _, _ = sudoku.file_splits(
        sudoku.load_csv(train_csv), sudoku.load_csv(test_csv), n=12, n_val=3, n_test=0, seed=1
    )
    assert (parts["train"]["puzzles"] == expected["puzzles"]).all()
    assert (parts["test"]["solutions"] == generated["solutions"][18:]).all()
