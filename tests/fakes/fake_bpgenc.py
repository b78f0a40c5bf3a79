"""A stand-in for BPG's ``bpgenc`` used by tests/test_bpg.py (standard library only).

It parses its argv like the real tool (``bpgenc [-q N] [-f 444|420|422] [-c SPACE]
[-b 8..12] [-o out.bpg] in.png``), rejects what the real tool rejects, and writes a
"bpg" file made of a magic line, a JSON line with the settings, and the input PNG.
Test switches (environment): FAKE_BPG_EXIT=N (fail with status N and a stderr
message), FAKE_BPG_NO_OUTPUT=missing|empty (exit 0 but
leave no output file, or an empty one), FAKE_BPG_SLEEP=S.
"""

import json
import os
import sys
import time

MAGIC = b"FAKEBPG1\n"
VALUE_OPTIONS = {"-o", "-q", "-f", "-c", "-b", "-e", "-m", "-alphaq"}
FLAG_OPTIONS = {"-lossless", "-hash", "-nometadata", "-v", "-premul", "-limitedrange", "-a"}
COLOR_SPACES = {"ycbcr", "rgb", "ycgco", "ycbcr_bt709", "ycbcr_bt2020"}


def fail(message, status=1):
    sys.stderr.write(f"bpgenc: {message}\n")
    sys.exit(status)


def main(argv):
    if "-h" in argv or not argv:
        print("BPG Image Encoder version 0.9.8-fake\nusage: bpgenc [options] infile.[jpg|png]\n"
              "-e encoder           select the HEVC encoder (x265, default = x265)")
        sys.exit(1)
    opts = {"-o": "out.bpg", "-q": "28", "-f": "420", "-c": "ycbcr", "-b": "8"}
    positional = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in VALUE_OPTIONS:
            if i + 1 >= len(argv):
                fail(f"option {arg} needs a value")
            opts[arg] = argv[i + 1]
            i += 2
        elif arg in FLAG_OPTIONS:
            opts[arg] = True
            i += 1
        elif arg.startswith("-"):
            fail(f"unknown option {arg}")
        else:
            positional.append(arg)
            i += 1
    if len(positional) != 1:
        fail(f"expected one input file, got {positional}")
    if not opts["-q"].isdigit() or not 0 <= int(opts["-q"]) <= 51:
        fail(f"invalid qp {opts['-q']}")
    if opts["-f"] not in {"420", "422", "444"}:
        fail("Invalid chroma format")
    if opts["-c"] not in COLOR_SPACES:
        fail("Invalid color space format")
    if not opts["-b"].isdigit() or not 8 <= int(opts["-b"]) <= 12:
        fail(f"invalid bit depth {opts['-b']}")
    time.sleep(float(os.environ.get("FAKE_BPG_SLEEP", "0")))
    if os.environ.get("FAKE_BPG_EXIT"):
        fail("simulated encoder failure", int(os.environ["FAKE_BPG_EXIT"]))
    open(opts["-o"], "wb").close()  # like the real tool: the output is opened before the input is read
    try:
        with open(positional[0], "rb") as fh:
            png = fh.read()
    except OSError:
        png = b""
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        fail(f"Could not read '{positional[0]}'")
    if os.environ.get("FAKE_BPG_NO_OUTPUT"):
        if os.environ["FAKE_BPG_NO_OUTPUT"] == "missing":
            os.remove(opts["-o"])
        sys.stderr.write("bpgenc: simulated silent failure\n")
        return
    header = {"q": int(opts["-q"]), "chroma": opts["-f"], "color_space": opts["-c"], "bit_depth": int(opts["-b"])}
    with open(opts["-o"], "wb") as fh:
        fh.write(MAGIC + json.dumps(header).encode() + b"\n" + png)


if __name__ == "__main__":
    main(sys.argv[1:])
