"""An archive's tar members, streamed with the standard library's tarfile: for checks that ask
what a package holds (verify, export), not for extraction (:mod:`.extract`)."""

from __future__ import annotations

import io

from ..model.filenames import CONDA_EXT


def info_members(archive: str):
    """``(member, read)`` for each member of the archive's info part, in archive order
    (``read()`` returns the current member's bytes). Raises what a damaged archive raises."""
    for member, tar in archive_members(archive, info_only=True):
        yield member, lambda m=member, t=tar: (t.extractfile(m) or io.BytesIO()).read()


def archive_members(archive: str, info_only: bool = False):
    """``(member, tar)`` for the tar members of a package archive, streamed (``.conda``: the
    info part, then the payload unless ``info_only``). Raises whatever reading raises."""
    import tarfile

    if archive.endswith(CONDA_EXT):
        import zipfile

        import zstandard

        with zipfile.ZipFile(archive) as zf:
            names = sorted(
                (n for n in zf.namelist() if n.endswith(".tar.zst")),
                key=lambda n: not n.startswith("info-"),
            )
            for name in names:
                if info_only and not name.startswith("info-"):
                    continue
                with zf.open(name) as raw:
                    stream = zstandard.ZstdDecompressor().stream_reader(raw)
                    with tarfile.open(fileobj=stream, mode="r|") as tar:
                        for member in tar:
                            yield member, tar
        return
    with tarfile.open(archive, mode="r|bz2") as tar:
        for member in tar:
            yield member, tar
