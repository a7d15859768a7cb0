"""Print a short summary of an `evolve eval --json` result (used by the GPU session scripts)."""

import json
import sys


def main() -> int:
    path, brief = sys.argv[1], "--brief" in sys.argv
    try:
        d = json.load(open(path))
    except Exception as e:  # noqa: BLE001 - a summary tool
        print("no JSON result:", e)
        return 1
    env = d.get("env", {})
    print(d["status"], d.get("failure"), "score", d.get("score"), "repeats", d.get("repeats"),
          "| gpu", env.get("gpu"), "| isolation", env.get("isolation"), "| wall", d.get("wall_s"))
    if not brief:
        for s in d.get("shapes", []):
            b = s.get("baselines") or {}
            print("  %-58s %8.1f TF  x%.3f  cudnn %s flash %s flex %s  err/torch %s" % (
                s["name"], s.get("tflops") or 0, s.get("speedup") or 0, b.get("cudnn"), b.get("flash"),
                b.get("flex"), s.get("error_ratio")))
    if d["status"] != "ok":
        print(d.get("log_tail", "")[-2500:])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
