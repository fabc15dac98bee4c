"""Question tables from the bundled datasets' labels, with templates (some held out for testing).

* ``digit_questions(frame)`` (av-digits): "Which digit is written?" (image), "Which digit is spoken?" (audio),
  "Are the written and the spoken digit the same?" (both; half the rows get the audio of another row with a
  different digit, so the answer is "no"); answers are words ("seven", "yes").
* ``motion_questions(frame)`` (BasicMotions): "What is the person doing?" from the accelerometer and gyroscope.

Each task has training templates and ``held_out=True`` templates (worded differently) for the test table.
Columns out: the modality columns, ``question``, ``answer``, ``task``, ``label`` (the class the answer names).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MOTIONS = {"standing": "standing", "walking": "walking", "running": "running", "badminton": "badminton"}

TEMPLATES = {
    "written": (["Which digit is written?", "What digit does the image show?", "Read the handwritten digit."],
                ["Which number is written in the picture?", "Name the digit drawn in the image."]),
    "spoken": (["Which digit is spoken?", "What digit does the speaker say?", "Which number is said in the clip?"],
               ["Which digit do you hear?", "Name the number spoken in the audio."]),
    "same": (["Are the written and the spoken digit the same?", "Do the image and the audio show the same digit?"],
             ["Is the spoken digit the one in the picture?"]),
    "motion": (["What is the person doing?", "Which activity is this?", "What activity do the sensors show?"],
               ["What is the person wearing the watch doing?", "Name the activity recorded."]),
}


def _template(task: str, held_out: bool, rng: np.random.Generator) -> str:
    options = TEMPLATES[task][1 if held_out else 0]
    return options[int(rng.integers(len(options)))]


def digit_questions(frame: pd.DataFrame, tasks=("written", "spoken", "same"), *, held_out: bool = False,
                    seed: int = 0) -> pd.DataFrame:
    """One question per row and task on an av-digits frame (columns image, audio, digit)."""
    rng = np.random.default_rng(seed)
    digits = frame["digit"].to_numpy().astype(int)
    out = []
    for task in tasks:
        part = pd.DataFrame({"image": frame["image"].to_list(), "audio": frame["audio"].to_list()})
        if task == "written":
            part["answer"], part["label"] = [WORDS[d] for d in digits], digits
            part["audio"] = None
        elif task == "spoken":
            part["answer"], part["label"] = [WORDS[d] for d in digits], digits
            part["image"] = None
        else:  # half the rows hear another row's clip of a different digit
            other = np.arange(len(frame))
            mismatch = rng.random(len(frame)) < 0.5
            for i in np.flatnonzero(mismatch):
                choices = np.flatnonzero(digits != digits[i])
                other[i] = choices[int(rng.integers(len(choices)))]
            part["audio"] = [frame["audio"].iloc[j] for j in other]
            same = digits == digits[other]
            part["answer"], part["label"] = np.where(same, "yes", "no"), same.astype(int)
            part["audio_digit"] = digits[other]
        part["image_digit"] = digits
        part["question"] = [_template(task, held_out, rng) for _ in range(len(part))]
        part["task"] = task
        out.append(part)
    return pd.concat(out, ignore_index=True)


def motion_questions(frame: pd.DataFrame, *, held_out: bool = False, seed: int = 0) -> pd.DataFrame:
    """One question per recording of a BasicMotions frame (columns accel, gyro, activity)."""
    rng = np.random.default_rng(seed)
    acts = [str(a).lower() for a in frame["activity"]]
    unknown = sorted(set(acts) - set(MOTIONS))
    if unknown:
        raise ValueError(f"unknown BasicMotions activities {unknown}; expected {sorted(MOTIONS)}")
    return pd.DataFrame({"accel": frame["accel"].to_list(), "gyro": frame["gyro"].to_list(),
                         "question": [_template("motion", held_out, rng) for _ in acts],
                         "answer": [MOTIONS[a] for a in acts], "label": acts, "task": "motion"})


__all__ = ["TEMPLATES", "WORDS", "digit_questions", "motion_questions"]
