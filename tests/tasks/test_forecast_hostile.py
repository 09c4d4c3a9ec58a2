"""Forecast CSV files a careless user or an attacker writes: one line naming the file and the
line, exit 2, and no run directory left behind."""

from __future__ import annotations

import pytest

from rnnkit.cli import main
from rnnkit.data.series import read_series
from rnnkit.errors import UserError

CASES = {
    "huge field": (
        'a,b\n1,2\n3,"' + "x" * 200_000 + '"\n',
        "w.csv:3: a field longer than 131,072 characters",
    ),
    "unbalanced quote": ('a,b\n1,2\n"3,4\n5,6\n7,8\n', "w.csv:3: unbalanced quote at line 3"),
    "unclosed quote, huge": (
        'a,b\n1,2\n3,"4\n' + "5,6\n" * 40_000,
        "unbalanced quote at line 3",
    ),
    "1e308": ("a,b\n1,2\n1e308,4\n5,6\n", "w.csv:3: column 'a': '1e308' is too large"),
    "-1e200": ("a,b\n1,2\n3,-1e200\n5,6\n", "w.csv:3: column 'b': '-1e200' is too large"),
    "junk after a quote": ('a,b\n1,"2"x\n', "w.csv:2: malformed CSV"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_csv_is_one_line_naming_the_line(tmp_path, case):
    text, fragment = CASES[case]
    (tmp_path / "w.csv").write_text(text)
    with pytest.raises(UserError) as err:
        read_series([str(tmp_path / "w.csv")])
    message = str(err.value)
    assert fragment in message and "\n" not in message and len(message) < 400, message


@pytest.mark.parametrize("case", ["huge field", "unbalanced quote", "1e308"])
def test_train_on_a_bad_csv_exits_2_and_leaves_no_run_directory(tmp_path, capsys, case):
    (tmp_path / "w.csv").write_text(CASES[case][0])
    out = tmp_path / "run"
    code = main(["train", "--task", "forecast", str(tmp_path / "w.csv"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("rnnkit: error: ") and err.count("\n") == 1, err
    assert CASES[case][1] in err
    assert not out.exists()
