"""Folders of labelled images: the one reader of which image shows which digit, for fine-tuning
(`digitsets`), the report's real-image folders and benchmarks/realworld.py alike.

    mnistlab finetune RUN --data runs/<name>/corrections   # a folder `mnistlab serve` filled

`labelled_images` gives each image file with its digit, following one rule for which layout
wins (see its docstring). The server's corrections folder is one such folder: sub-folders 0..9
and a labels.csv listing the same files (mnistlab.serve.corrections).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from mnistlab.data.decode import IMAGE_SUFFIXES
from mnistlab.data.formats import MISSING, describe_error, not_a_regular_file
from mnistlab.data.mnist import NUM_CLASSES, DataError

LABELS_FILE = "labels.csv"  # file,label rows, as mnistlab.serve.corrections writes them
INDEX_FILE = "index.csv"  # a wider table with file and label columns, as data sets ship them
LABEL_TABLES = (LABELS_FILE, INDEX_FILE)  # in the order they are looked for
CLASS_FOLDERS = "sub-folders 0-9"  # the layout of one sub-folder per digit
FOLDER_NAME = "the folder's name"  # the layout of a folder named after its digit
_DIGIT_NAMES = [str(digit) for digit in range(NUM_CLASSES)]  # sub-folder names and labels


@dataclass(frozen=True)
class LabelledImages:
    """The labelled images of one folder, and where their labels came from."""

    images: list[tuple[Path, int]]  # (image file, digit) in the table's order, else sorted by name
    layout: str  # LABELS_FILE, INDEX_FILE, CLASS_FOLDERS or FOLDER_NAME
    skipped: list[str] = field(default_factory=list)  # why each table row was left out (strict=False)
    missing: list[str] = field(default_factory=list)  # files the table lists that are gone (missing_ok)


class _MissingImage(DataError):
    """A table row whose file is gone: moved or deleted after the row was written."""

    def __init__(self, message: str, name: str):
        super().__init__(message)
        self.name = name  # the file as the table lists it


def labels_layout(folder: str | os.PathLike) -> str | None:
    """Return the layout labelled_images reads from a folder, or None when it has none of them."""
    root = Path(folder)
    table = next((name for name in LABEL_TABLES if (root / name).is_file()), None)
    if table is not None:
        return table
    if any((root / digit).is_dir() for digit in _DIGIT_NAMES):
        return CLASS_FOLDERS
    if root.name in _DIGIT_NAMES:
        return FOLDER_NAME
    return None


def labelled_images(folder: str | os.PathLike, *, strict: bool = True, missing_ok: bool = False) -> LabelledImages:
    """Read which image of a folder shows which digit.

    The rule, first match wins:

    1. A table, labels.csv or else index.csv: CSV rows of an image file (relative to the folder
       and inside it) and its digit 0-9. Only the files it lists are read, so an image saved
       without its row (a crash between the two) is ignored, and the table wins over sub-folders
       beside it. The first non-empty row is a header when it names columns `file` and `label`
       (other columns may sit beside them, as in index.csv) or when it is two fields whose second
       is not a number; without one, every row is `file,label`.
    2. Sub-folders named 0..9, each holding images of its digit.
    3. The folder's own name, when it is a digit: all its images show that digit.

    Images are the files ending in IMAGE_SUFFIXES; hidden files (a crashed atomic_write's
    leftovers, the system's) are skipped. Images are not decoded here.

    Args:
        folder: the folder to read.
        strict: raise on a bad table row (not `file,label`, a label other than 0-9, a file listed
            twice, outside the folder (by `..`, an absolute path or a symbolic link), missing or
            not a regular file); False leaves it out and says why in `skipped`.
        missing_ok: leave out the rows whose file is missing, whatever `strict` says, and list
            their names in `missing`: the files of a corrections folder are moved away by hand
            (as the server advises when it is full), and their rows stay behind.

    Raises:
        DataError: no such folder, none of the layouts, an unreadable table or folder, a bad row
            when strict, or no image at all.
    """
    root = Path(folder)
    if not root.is_dir():
        state = "is not a folder" if root.exists() else "does not exist"
        raise DataError(f"Image folder {root} {state}.")
    layout = labels_layout(root)
    skipped: list[str] = []
    missing: list[str] = []
    if layout in LABEL_TABLES:
        images, skipped, missing = _read_table(root, root / layout, strict, missing_ok)
        where = f"listed in its {layout}"
    elif layout == CLASS_FOLDERS:
        images = [(path, digit) for digit in range(NUM_CLASSES) for path in _images_in(root / str(digit))]
        where = f"({', '.join(IMAGE_SUFFIXES)}) in its {CLASS_FOLDERS}"
    elif layout == FOLDER_NAME:
        images = [(path, int(root.name)) for path in _images_in(root)]
        where = f"({', '.join(IMAGE_SUFFIXES)}) in it, though it is named after a digit"
    else:
        raise DataError(
            f"Image folder {root} holds no labelled images: put them in sub-folders 0..9, or list "
            f"them in {LABELS_FILE} (columns file,label)."
        )
    if not images:
        if skipped:
            left_out = f" (every row was left out; the first: {skipped[0].rstrip('.')})"
        elif missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            left_out = f" (every file it lists is missing: {missing[0]}{more})"
        else:
            left_out = ""
        raise DataError(f"Image folder {root} holds no images {where}{left_out}.")
    return LabelledImages(images, layout, skipped, missing)


def _images_in(folder: Path) -> list[Path]:
    """The image files in folder (not below it), sorted by name; none when it is no folder."""
    if not folder.is_dir():
        return []
    try:
        return sorted(
            path
            for path in folder.iterdir()
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()
        )
    except OSError as exc:
        raise DataError(f"Image folder {folder} could not be listed ({exc.strerror or exc}).") from exc


def _read_table(
    folder: Path, table: Path, strict: bool, missing_ok: bool
) -> tuple[list[tuple[Path, int]], list[str], list[str]]:
    """Return (image, label) for each good row of a labels table, why each bad one was left out,
    and the names of missing files left out (missing_ok).

    Raises:
        DataError: the table cannot be read or is not CSV; a bad row, when strict.
    """
    try:
        text = table.read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{table} could not be read ({describe_error(exc)}).") from exc
    reader = csv.reader(io.StringIO(text))
    try:
        rows = [(reader.line_num, row) for row in reader]  # line_num: where the row ended
    except csv.Error as exc:  # a field over csv.field_size_limit() (128 KiB)
        raise DataError(f"{table} line {reader.line_num} is not CSV ({describe_error(exc)}).") from exc
    rows = [(line, row) for line, row in rows if any(field.strip() for field in row)]
    header = _header_columns([field.strip() for field in rows[0][1]]) if rows else None
    if header is not None:
        rows = rows[1:]
    entries: list[tuple[Path, int]] = []
    skipped: list[str] = []
    missing: list[str] = []
    lines_of: dict[str, int] = {}  # file name -> the line that listed it
    inside = _resolved(folder)
    for line, row in rows:
        try:
            entries.append(_table_entry(folder, inside, table, line, row, header or (0, 1, 2), lines_of))
        except _MissingImage as exc:
            if missing_ok:
                missing.append(exc.name)
            elif strict:
                raise
            else:
                skipped.append(str(exc))
        except DataError as exc:
            if strict:
                raise
            skipped.append(str(exc))
    return entries, skipped, missing


def _resolved(path: Path) -> Path | None:
    """The path with symbolic links followed, or None when they loop."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symbolic link loop: RuntimeError before Python 3.13
        return None


def _header_columns(fields: list[str]) -> tuple[int, int, int] | None:
    """(file column, label column, row width) when the first row is a header, else None."""
    names = [name.lower() for name in fields]
    if "file" in names and "label" in names:
        return names.index("file"), names.index("label"), len(names)
    if len(fields) == 2 and not fields[1].lstrip("+-").isdigit():  # "file,label" by other names
        return 0, 1, 2
    return None


def _table_entry(
    folder: Path, inside: Path | None, table: Path, line: int, row: list[str], columns: tuple[int, int, int],
    lines_of: dict[str, int],
) -> tuple[Path, int]:
    """Check one row of a labels table, note its file in lines_of, and return its (image, label).

    Args:
        inside: the folder with symbolic links followed, which every listed file must lie in.

    Raises:
        _MissingImage: its file is missing.
        DataError: the row is not `file,label` (or as wide as the header), its label is not a
            digit 0-9, or its file was listed before, lies outside the folder or is not a
            regular file.
    """
    where = f"{table} line {line}"
    file_at, label_at, width = columns
    fields = [field.strip() for field in row]
    if len(fields) != width or not fields[file_at]:
        shape = "a `file,label` row" if width == 2 else f"a row of the header's {width} columns"
        raise DataError(f"{where} is not {shape}: {','.join(row)[:60]!r}.")
    name, label = fields[file_at], fields[label_at]
    if label not in _DIGIT_NAMES:
        raise DataError(f"{where} gives label {label[:20]!r}; labels are the digits 0-9.")
    if name in lines_of:
        raise DataError(f"{where} lists {name} again (first on line {lines_of[name]}).")
    path = folder / name
    # Only what lies inside the folder is read, whatever a table names: ../x.png, /etc/x.png, or a
    # link out of the folder (resolve() follows it, including to where nothing is yet).
    target = _resolved(path)
    outside = PurePath(name).is_absolute() or ".." in PurePath(name).parts
    if outside or inside is None or target is None or not target.is_relative_to(inside):
        raise DataError(f"{where} names {name}, which is outside {folder}.")
    problem = not_a_regular_file(path)
    if problem == MISSING:
        raise _MissingImage(
            f"{where} names {name}, which is missing from {folder} (moved or deleted after its row "
            "was written).", name
        )
    if problem is not None:
        raise DataError(f"{where} names {name}, which {problem}.")
    lines_of[name] = line
    return path, int(label)
