"""The live display of a storm: one line per second on stderr (rate, p50, p99,
errors, shed), or a rich live table when stderr is a terminal and rich is
installed. stdout stays free for the report."""

import sys

ROWS_SHOWN = 12


def _line(view: dict) -> str:
    def ms(value):
        return "      -" if value is None else f"{value:7.1f}"

    return (f"{view['second'] + 1:4d}s  offered {view['offered']:6d}/s  achieved {view['achieved']:6d}/s  "
            f"p50 {ms(view['p50_ms'])} ms  p99 {ms(view['p99_ms'])} ms  errors {view['errors']:5d}  "
            f"shed {view['shed']:5d}  in flight {view['in_flight']:5d}  flows {view['flows']:6d}"
            + ("  (winding down)" if view.get("winding_down") else ""))


class LineProgress:
    def __init__(self, stream=None) -> None:
        self._stream = stream or sys.stderr

    def note(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def update(self, view: dict) -> None:
        print(_line(view), file=self._stream, flush=True)

    def close(self) -> None:
        pass


class RichProgress:
    """The last seconds as a live table (rich.live), on stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console(stderr=True)
        self._rows: list[dict] = []
        self._live = Live(self._table(), console=self._console, refresh_per_second=4, transient=False)
        self._live.start()

    def _table(self):
        from rich.table import Table

        table = Table(title="grid load: per second", expand=False)
        for column in ("s", "offered/s", "achieved/s", "p50 ms", "p99 ms", "errors", "shed", "in flight", "flows"):
            table.add_column(column, justify="right")
        for view in self._rows[-ROWS_SHOWN:]:
            table.add_row(*(str(value) if value is not None else "-" for value in (
                view["second"] + 1, view["offered"], view["achieved"], view["p50_ms"], view["p99_ms"],
                view["errors"], view["shed"], view["in_flight"], view["flows"])),
                style="yellow" if view.get("winding_down") else None)
        return table

    def note(self, text: str) -> None:
        self._console.print(text)

    def update(self, view: dict) -> None:
        self._rows.append(view)
        self._live.update(self._table())

    def close(self) -> None:
        self._live.stop()


def make_progress(enabled: bool = True, stream=None):
    """None when disabled; rich on a terminal when rich is there; lines otherwise."""
    if not enabled:
        return None
    stream = stream or sys.stderr
    if stream is sys.stderr and stream.isatty():
        try:
            return RichProgress()
        except ImportError:
            pass
    return LineProgress(stream)
