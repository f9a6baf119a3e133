"""A slow disk for the processes that extract a bomb in tests (Python imports this module at
start-up when this folder is on PYTHONPATH).

A bomb inflates to 8-64 GiB of zeros at the disk's full speed. The test waits for a few MB, then
interrupts or kills the process; on a loaded machine the test itself can be starved for minutes
while the extraction goes on, and once filled a 60 GB disk. With ``CPX_TEST_SLOW_WRITES`` set to
a file name, every ``os.write`` of the process writes at most 64 KiB after a 10 ms pause (a
short write, which the extractor must handle anyway), so a starved test costs at most ~6 MB a
second; the file is created at the first such write, so a test can check the brake is on.
"""

import os

_MARK = os.environ.get("CPX_TEST_SLOW_WRITES")

if _MARK:
    import time

    _real_write = os.write
    _marked = False

    def _slow_write(fd, data):
        global _marked
        if not _marked:
            _marked = True
            open(_MARK, "a").close()
        time.sleep(0.01)
        return _real_write(fd, memoryview(data)[:65536])

    os.write = _slow_write
