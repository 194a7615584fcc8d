"""A trial's prints are kept with the trial; other threads print as usual."""

from __future__ import annotations

import sys
import threading

from nbtune.run.output import captured_output


def test_each_thread_collects_its_own_prints(capsys):
    out: dict[str, list[str]] = {}
    start = threading.Barrier(2)

    def trial(name: str) -> None:
        with captured_output() as buf:
            start.wait()
            for i in range(3):
                print(name, i)
            print("warn", name, file=sys.stderr)
        out[name] = buf

    threads = [threading.Thread(target=trial, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("main thread")
    assert "".join(out["a"]) == "a 0\na 1\na 2\nwarn a\n"
    assert "".join(out["b"]) == "b 0\nb 1\nb 2\nwarn b\n"
    captured = capsys.readouterr()
    assert captured.out == "main thread\n" and "warn" not in captured.err


def test_streams_are_restored_after_the_last_trial():
    before = sys.stdout, sys.stderr
    with captured_output():
        with captured_output():
            assert sys.stdout is not before[0]
        assert sys.stdout is not before[0]
    assert (sys.stdout, sys.stderr) == before
