"""A time series from a CSV file: one value column (and optionally a time column), put on its regular time grid."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from tinyformers.data.userfiles import SERIES_CSV, finite_number, read_user_text
from tinyformers.errors import UserError

HOUR, DAY = 3600.0, 86400.0
MAX_FILLED_GAP = 3  # missing time steps filled by linear interpolation; longer gaps are an error
# the built-in series: name -> (file in vega_datasets/_data, time column, default value column, values in °F)
DATASETS = {
    "sf-hourly": ("sf-temps.csv", "date", "temp", True),
    "seattle-hourly": ("seattle-temps.csv", "date", "temp", True),
    "seattle-daily": ("seattle-weather.csv", "date", "temp_max", False),
}


def read_series(path: str, column: str, time_column: str = "") -> tuple[np.ndarray, list[str] | None]:
    """Values of ``column`` (and the raw strings of ``time_column``) from a CSV; errors name file, line, column."""
    content = read_user_text(path, SERIES_CSV)  # missing, a folder, NUL bytes, not UTF-8: one-line errors
    try:
        reader = csv.DictReader(io.StringIO(content, newline=""))  # newline="": as csv wants a file opened
        header = reader.fieldnames or []
        if not header:
            raise UserError(f"{path}: empty file; expected a header line naming the columns, then one row per time")
        for name in (column, time_column):
            if name and name not in header:
                raise UserError(f"{path}: no column {name!r}; columns: {', '.join(header) or '(none)'}")
        values: list[float] = []
        times: list[str] = []
        for row in reader:
            line = reader.line_num
            text = (row.get(column) or "").strip()
            if not text:
                raise UserError(f"{path}: line {line}: column {column!r} is empty (a missing value); fill or drop it")
            try:
                values.append(finite_number(text))
            except ValueError as e:
                raise UserError(f"{path}: line {line}: column {column!r} = {text!r} {e}") from None
            if time_column:
                stamp = (row.get(time_column) or "").strip()
                if not stamp:
                    raise UserError(f"{path}: line {line}: column {time_column!r} is empty (a missing time)")
                times.append(stamp)
    except csv.Error as e:
        raise UserError(f"{path}: not a readable CSV file ({e})") from None
    if not values:
        raise UserError(f"{path}: no data rows")
    return np.asarray(values, dtype=np.float64), (times if time_column else None)


def regular_grid(path: str, values: np.ndarray, stamps: list[str]) -> tuple[np.ndarray, float, str]:
    """Put the series on its regular time grid: the interval is the most common step; missing steps of up to
    ``MAX_FILLED_GAP`` are filled by linear interpolation. Returns (values, interval in seconds, last time)."""
    import pandas as pd  # heavy: loaded when a time column is read

    times = pd.to_datetime(pd.Series(stamps), errors="coerce", format="mixed")
    if times.isna().any():
        i = int(times.isna().to_numpy().argmax())
        raise UserError(f"{path}: line {i + 2}: {stamps[i]!r} is not a date/time")
    seconds = (times - times.iloc[0]).dt.total_seconds().to_numpy()
    steps = np.diff(seconds)
    if len(steps) and (steps <= 0).any():
        i = int((steps <= 0).argmax()) + 1
        raise UserError(f"{path}: line {i + 2}: time {stamps[i]!r} does not come after the previous row's")
    interval = float(pd.Series(steps).mode().iloc[0]) if len(steps) else DAY
    position = seconds / interval
    off_grid = np.abs(position - np.round(position)) > 1e-6
    if off_grid.any():
        i = int(off_grid.argmax())
        raise UserError(f"{path}: line {i + 2}: time {stamps[i]!r} is not on the series' {interval:g} s grid")
    index = np.round(position).astype(int)
    gaps = np.diff(index) - 1
    if len(gaps) and gaps.max() > MAX_FILLED_GAP:
        i = int(gaps.argmax()) + 1
        raise UserError(
            f"{path}: line {i + 2}: {gaps.max()} time steps missing before {stamps[i]!r} "
            f"(at most {MAX_FILLED_GAP} are interpolated)"
        )
    grid = np.interp(np.arange(index[-1] + 1), index, values)
    return grid, interval, str(times.iloc[-1])


def vega_path(name: str) -> Path:
    import vega_datasets  # optional: the built-in series

    return Path(vega_datasets.__file__).parent / "_data" / name


def load_series(path: str, column: str, time_column: str, fahrenheit: bool) -> tuple[np.ndarray, float, str]:
    """The series of ``column`` on its regular grid (°F converted to °C when ``fahrenheit``), its interval in
    seconds and its last time; without a time column the rows are taken as equally spaced (interval 0, no time)."""
    values, stamps = read_series(path, column, time_column)
    interval, last_time = 0.0, ""
    if stamps is not None:
        values, interval, last_time = regular_grid(path, values, stamps)
    if fahrenheit:
        values = (values - 32) * 5 / 9
    return values, interval, last_time
