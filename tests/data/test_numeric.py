"""rnnkit.data.numeric: the .ts, NPZ and CSV readers on hand-written files (univariate,
multivariate, unequal lengths, missing values), which files count as series, the per-channel
normalisation against a direct computation, and every bad input as one line naming the file
and line."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.data.numeric import fit_scaler, is_series, normalise, read_series
from rnnkit.errors import UserError

UNIVARIATE = """\
# a comment
@problemName Tiny
@timeStamps false
@missing true
@univariate true
@equalLength false
@classLabel true up down
@data
1,2,3,4:up
4,?,2:down

0.5,-1e-1:up
"""

MULTIVARIATE = """\
@problemName Multi
@univariate false
@dimensions 2
@equalLength true
@seriesLength 3
@classLabel true 1 2
@data
1,2,3:10,20,30:1
4,5,6:40,50,60:2
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def values(series, i):
    return series.values[i].tolist()


# ---- .ts ---------------------------------------------------------------------------------


def test_ts_univariate_unequal_lengths_missing_values_and_labels(tmp_path):
    s = read_series([write(tmp_path, "t.ts", UNIVARIATE)])
    assert s.labels == ["up", "down", "up"]
    assert s.channels == 1
    assert values(s, 0) == [[1.0], [2.0], [3.0], [4.0]]
    assert s.values[1][0, 0] == 4 and np.isnan(s.values[1][1, 0]) and s.values[1][2, 0] == 2
    assert np.allclose(s.values[2][:, 0], [0.5, -0.1])
    assert s.sources[0].endswith("t.ts:9") and s.sources[2].endswith("t.ts:12")


def test_ts_multivariate_dimensions_become_channels(tmp_path):
    s = read_series([write(tmp_path, "m.ts", MULTIVARIATE)])
    assert s.channels == 2 and s.labels == ["1", "2"]
    assert values(s, 1) == [[4, 40], [5, 50], [6, 60]]


def test_ts_without_labels_reads_for_predict_only(tmp_path):
    path = write(tmp_path, "u.ts", "@classLabel false\n@data\n1,2\n3,4,5\n")
    s = read_series([path], labelled=False)
    assert s.labels == ["", ""] and [len(v) for v in s.values] == [2, 3]
    with pytest.raises(UserError, match=r"u.ts: @classLabel false"):
        read_series([path])


HEAD = "@classLabel true a b\n@data\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"x.ts is empty"),
        ("@classLabel true a b\n", r"x.ts: no @data line"),
        (HEAD, r"x.ts: no cases after @data"),
        ("@problemName X\nnot a header\n", r"x.ts:2: expected an @header or @data"),
        ("@colour red\n@data\n", r"x.ts:1: unknown header @colour"),
        ("@missing maybe\n", r"x.ts:1: @missing must be true or false, got 'maybe'"),
        ("@dimensions two\n", r"x.ts:1: @dimensions must be a positive integer"),
        ("@univariate true\n@dimensions 3\n", r"x.ts:2: @univariate true but @dimensions 3"),
        ("@classLabel true\n", r"x.ts:1: @classLabel true names no labels"),
        ("@data\n1,2\n", r"x.ts:1: @data before @classLabel"),
        ("@timeStamps true\n" + HEAD, r"x.ts: @timeStamps true is not supported"),
        (HEAD + "1,2:a\n1,x:b\n", r"x.ts:4: dimension 1: 'x' is not a number"),
        (HEAD + "1,inf:a\n", r"x.ts:3: dimension 1: 'inf' is not a finite number"),
        (HEAD + "1,2:c\n", r"x.ts:3: class label 'c' is not in @classLabel \(a b\)"),
        (HEAD + "1,2:\n", r"x.ts:3: empty class label"),
        (HEAD + "1,2:a\n1,2:3,4:b\n", r"x.ts:4: 2 dimensions, expected 1"),
        ("@dimensions 2\n" + HEAD + "1,2:a\n", r"x.ts:4: 1 dimensions, expected 2"),
        (HEAD + "1,2:3,4:a\n", None),  # two dimensions: fine on their own
        (HEAD + "1,2,3:3:a\n", r"x.ts:3: dimensions of different lengths \(3, 1\)"),
        ("@missing false\n" + HEAD + "1,?:a\n", r"x.ts:4: '\?' in dimension 1, but @missing"),
        (HEAD + "?,?:a\n", r"x.ts:3: a sequence without a single value"),
        (HEAD + ":a\n", r"x.ts:3: a case without values"),
        ("@seriesLength 3\n" + HEAD + "1,2:a\n", r"x.ts:4: 2 values, but @seriesLength 3"),
        ("@equalLength true\n" + HEAD + "1,2:a\n1:b\n", r"x.ts:5: 1 values, the first case"),
    ],
)
def test_ts_errors_name_the_file_and_line(tmp_path, text, message):
    path = write(tmp_path, "x.ts", text)
    if message is None:
        assert read_series([path]).channels == 2
        return
    with pytest.raises(UserError, match=message):
        read_series([path])


def test_files_with_different_channel_counts_are_refused(tmp_path):
    a = write(tmp_path, "a.ts", HEAD + "1,2:a\n")
    b = write(tmp_path, "b.ts", HEAD + "1,2:3,4:b\n")
    with pytest.raises(UserError, match=r"b.ts:3: 2 channels, but .*a.ts:3 has 1"):
        read_series([a, b])


# ---- CSV ---------------------------------------------------------------------------------


def test_csv_one_sequence_per_row_label_column_anywhere_trailing_cells_shorten(tmp_path):
    path = write(tmp_path, "s.csv", "t1,t2,class,t3\n1,2,walk,3\n4,,run,\n?,6,walk,nan\n")
    s = read_series([path], label_column="class")
    assert s.labels == ["walk", "run", "walk"]
    assert values(s, 0) == [[1], [2], [3]]
    assert values(s, 1) == [[4]]  # the empty cells are the end of a shorter sequence
    assert np.isnan(s.values[2][0, 0]) and s.values[2][1, 0] == 6 and np.isnan(s.values[2][2, 0])
    assert s.sources[1].endswith("s.csv:3")


def test_csv_directory_one_multivariate_file_per_sequence(tmp_path):
    for label, rows in {"walk": "x,y\n1,2\n3,4\n", "run": "5,6\n7,\n8,9\n"}.items():
        (tmp_path / "d" / label).mkdir(parents=True)
        (tmp_path / "d" / label / "001.csv").write_text(rows, encoding="utf-8")
    (tmp_path / "d" / "notes.txt").write_text("ignored", encoding="utf-8")
    s = read_series([str(tmp_path / "d")])
    assert s.labels == ["run", "walk"] and s.channels == 2
    assert values(s, 1) == [[1, 2], [3, 4]]  # the header row is skipped
    assert len(s.values[0]) == 3 and np.isnan(s.values[0][1, 1])


@pytest.mark.parametrize(
    "text, message",
    [
        ("t1,t2\n1,2\n", r"s.csv:1: no 'label' column in the header row"),
        ("label,t1,t2\n", r"s.csv has a header but no sequences"),
        ("label,t1,t2\na,1,2\nb,1\n", r"s.csv:3: ragged row: 2 columns, the first row has 3"),
        ("label,t1,t2\na,1,2\n,1,2\n", r"s.csv:3: empty label in column 'label'"),
        ("label,t1,t2\na,1,two\n", r"s.csv:2: column 3: 'two' is not a number"),
        ("label,t1,t2\na,1,-inf\n", r"s.csv:2: column 3: '-inf' is not a finite number"),
        ("label,t1,t2\na,?,\n", r"s.csv:2: a sequence without a single value"),
        ('label,t1,t2\na,"1\n', r"s.csv:\d+: bad CSV"),
    ],
)
def test_csv_errors_name_the_file_and_line(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        read_series([write(tmp_path, "s.csv", text)])


def test_an_unlabelled_csv_is_one_sequence_for_predict(tmp_path):
    s = read_series([write(tmp_path, "one.csv", "a,b\n1,2\n3,4\n5,6\n")], labelled=False)
    assert s.labels == [""] and values(s, 0) == [[1, 2], [3, 4], [5, 6]]


# ---- NPZ ---------------------------------------------------------------------------------


def test_npz_lengths_given_inferred_from_trailing_nan_and_2d_x(tmp_path):
    x = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    np.savez(tmp_path / "a.npz", x=x, y=np.array(["p", "q"]), lengths=np.array([4, 2]))
    s = read_series([str(tmp_path / "a.npz")])
    assert s.labels == ["p", "q"] and s.channels == 3
    assert np.array_equal(s.values[0], x[0]) and np.array_equal(s.values[1], x[1, :2])
    x2 = np.array([[1.0, np.nan, 3.0, np.nan], [1.0, 2.0, 3.0, 4.0]])
    np.savez(tmp_path / "b.npz", x=x2, y=np.array([0, 1]))
    s = read_series([str(tmp_path / "b.npz")])
    assert s.labels == ["0", "1"] and s.channels == 1
    assert len(s.values[0]) == 3 and np.isnan(s.values[0][1, 0])  # interior NaN: missing
    assert len(s.values[1]) == 4


def npz(tmp_path, **arrays):
    np.savez(tmp_path / "z.npz", **arrays)
    return str(tmp_path / "z.npz")


X = np.zeros((2, 3, 1))


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"y": np.array([0, 1])}, r"z.npz: no array 'x' \(it holds y\)"),
        ({"x": np.zeros((2, 3, 1, 1)), "y": np.array([0, 1])}, r"z.npz: x has shape"),
        ({"x": np.zeros((0, 3)), "y": np.array([])}, r"z.npz: x has shape"),
        ({"x": np.array([["a", "b"]]), "y": np.array([0])}, r"z.npz: x holds <U1"),
        ({"x": X}, r"z.npz: no array 'y' of labels"),
        ({"x": X, "y": np.array([0, 1, 2])}, r"z.npz: y has shape \(3,\); expected \(2,\)"),
        ({"x": X, "y": np.array([0.5, 1.0])}, r"z.npz: y holds float64 values"),
        ({"x": X, "y": np.array(["a", " "])}, r"z.npz: y\[1\] is an empty label"),
        ({"x": X, "y": np.array([0, 1]), "lengths": np.array([1, 4])}, r"lengths\[1\] is 4"),
        ({"x": X, "y": np.array([0, 1]), "lengths": np.array([1.0, 2])}, r"lengths must be"),
        ({"x": np.full((2, 3), np.inf), "y": np.array([0, 1])}, r"x holds an infinite value"),
        ({"x": np.full((2, 3), np.nan), "y": np.array([0, 1])}, r"sequence 1: a sequence with"),
    ],
)
def test_npz_errors_name_the_file(tmp_path, arrays, message):
    with pytest.raises(UserError, match=message):
        read_series([npz(tmp_path, **arrays)])


def test_npz_refuses_pickles_and_junk(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(UserError, match=r"p.npz: not a readable .npz archive"):
        read_series([str(path)])
    junk = tmp_path / "j.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(UserError, match=r"j.npz: not a readable .npz archive"):
        read_series([str(junk)])


# ---- which files are series, missing paths -------------------------------------------------


def test_is_series_tells_numeric_files_from_labelled_text(tmp_path):
    text_csv = write(tmp_path, "t.csv", "label,text\npos,good film\n")
    series_csv = write(tmp_path, "s.csv", "label,t1,t2\na,1,2\n")
    (tmp_path / "names").mkdir()
    (tmp_path / "names" / "English.txt").write_text("Smith\n", encoding="utf-8")
    assert not is_series([text_csv]) and not is_series([str(tmp_path / "names")])
    assert not is_series([write(tmp_path, "r.tsv", "pos\tgood\n")])
    assert is_series([series_csv]) and is_series(["any.ts"]) and is_series(["any.npz"])
    assert not is_series([series_csv], label_column="class")


def test_missing_paths_and_unknown_suffixes(tmp_path):
    with pytest.raises(UserError, match=r"no such file or directory: nope.ts"):
        read_series(["nope.ts"])
    with pytest.raises(UserError, match=r"x.txt: not a series file"):
        read_series([write(tmp_path, "x.txt", "1,2\n")])
    with pytest.raises(UserError, match=r"directory .* has no LABEL/\*.csv files"):
        read_series([str(tmp_path)])


# ---- normalisation -----------------------------------------------------------------------


def test_scaler_is_the_per_channel_mean_and_std_over_present_values():
    a = np.array([[1.0, 10.0], [np.nan, 10.0], [3.0, 10.0]], dtype=np.float32)
    b = np.array([[5.0, 10.0]], dtype=np.float32)
    mean, std = fit_scaler([a, b])
    present = np.array([1.0, 3.0, 5.0])
    assert mean == pytest.approx([present.mean(), 10.0])
    assert std == pytest.approx([present.std(), 1.0])  # no spread: sigma 1, not 0
    out = normalise(a, mean, std)
    assert out.dtype == np.float32
    assert out[:, 0] == pytest.approx([(1 - 3) / present.std(), 0.0, (3 - 3) / present.std()])
    assert out[:, 1] == pytest.approx([0, 0, 0])
