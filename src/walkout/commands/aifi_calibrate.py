"""`walkout aifi calibrate`: recalibrate the AiFi cps-test-01 cameras from the footage and a
survey, writing a camera file with provenance (issue 9)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from walkout.commands import ForceOpt, output_file_problem
from walkout.commands.say import dim


def register(app: typer.Typer, bench_app: typer.Typer, store_app: typer.Typer,
             aifi_app: typer.Typer) -> None:
    del app, bench_app, store_app

    @aifi_app.command("calibrate")
    def aifi_calibrate(
        videos: Annotated[Path, typer.Argument(help="directory of the cps-test-01 videos")],
        survey: Annotated[Path, typer.Option(
            "--survey", help="survey YAML (fixture points picked in the frames)")],
        out: Annotated[Path, typer.Option("--out", help="camera file (JSON) to write")],
        backend: Annotated[str, typer.Option(
            "--backend", help="pose backend: movenet (CPU default), openvino-hpe, onnx")]
        = "movenet",
        models: Annotated[Path | None, typer.Option(
            "--models", help="models directory (default: ../shared/models)")] = None,
        max_survey_px: Annotated[float, typer.Option(
            help="refuse a calibration with a survey pick reprojected further off than this "
            "(px): the survey and the footage disagree")] = 12.0,
        lens: Annotated[str, typer.Option(
            "--lens", help="store: the store file's lens; plumbline: fitted on each video's "
            "straight edges (the cps-test-01 videos are rectified)")] = "store",
        intrinsics: Annotated[str, typer.Option(
            "--intrinsics", help="store: the store file's camera matrix; image: focal length "
            "from orthogonal vanishing points of each video's edges (needs --lens plumbline)")]
        = "store",
        edges_frame: Annotated[int, typer.Option(
            help="video frame the lens and vanishing points are measured on")] = 300,
        refine_intrinsics: Annotated[str | None, typer.Option(
            "--refine-intrinsics", help="f: free each camera's f in the bundle adjustment, the "
            "principal point held at the image centre (recommended: the shopper's joints do "
            "not pin it); f,pp: free f, cx, cy; both held by priors at the measured values "
            "(needs --intrinsics image)")] = None,
        force: ForceOpt = False,
    ) -> None:
        """Camera poses of cams 1, 3, 5, 7 from the shopper's joints, placed in the store by
        the survey; writes them with date, inputs and residuals per camera and survey point
        (and, with --lens/--intrinsics, the lens and camera matrix measured per video)."""
        from walkout.commands.perception import _config, _fail, _perceive_videos
        from walkout.perception.aifi_calibrate import (
            calibration_file,
            image_intrinsics,
            refuse_misfit,
            video_frame,
        )
        from walkout.perception.aifi_video import VIDEO_CAMERAS
        from walkout.perception.calibrate import CalibrationError
        from walkout.perception.camera_file import Intrinsics, write_camera_file
        from walkout.perception.plumbline import PlumbLineError
        from walkout.perception.survey import SurveyError, load_survey
        from walkout.perception.vanishing import VanishingError
        from walkout.store import StoreFileError, load_store

        if lens not in ("store", "plumbline") or intrinsics not in ("store", "image"):
            raise _fail(f"--lens {lens} --intrinsics {intrinsics}: expected --lens store|"
                        "plumbline and --intrinsics store|image")
        if intrinsics == "image" and lens != "plumbline":
            raise _fail("--intrinsics image needs --lens plumbline (the store's lens belongs "
                        "to the store's camera matrix)")
        if refine_intrinsics not in (None, "f", "f,pp"):
            raise _fail(f"--refine-intrinsics {refine_intrinsics}: expected f or f,pp")
        if refine_intrinsics and intrinsics != "image":
            raise _fail("--refine-intrinsics needs --intrinsics image (the measured f and its "
                        "spread are the prior)")
        problem = output_file_problem(out, force)  # said before minutes of perception
        if problem:
            raise _fail(f"--out {out}: {problem}")
        if not videos.is_dir():
            raise _fail(f"{videos}: not a directory of videos")
        missing = [n for n in VIDEO_CAMERAS.values() if not (videos / n).is_file()]
        if missing:
            raise _fail(f"{videos}: missing {', '.join(missing)}")
        try:
            sv = load_survey(survey)
            store = load_store(sv.store)
            sv.check_cameras(store.cameras_by_id)
        except (SurveyError, StoreFileError) as e:
            raise _fail(str(e)) from e
        cams = [store.cameras_by_id[c] for c in VIDEO_CAMERAS]
        measured: dict[str, Intrinsics] = {}
        if lens != "store":
            for i, c in enumerate(cams):
                try:
                    gray = video_frame(videos / VIDEO_CAMERAS[c.id], edges_frame)
                    cams[i], measured[c.id] = image_intrinsics(
                        gray, c, lens=lens, focal=intrinsics, frame=edges_frame)
                except (OSError, PlumbLineError, VanishingError) as e:
                    raise _fail(f"{c.id}: {e}; nothing written") from e
                m = measured[c.id]
                dim(f"{c.id}: lens k1 {m.k1:+.3f} k2 {m.k2:+.3f} "
                    f"({m.lens_edges} edges, {m.lens_rms_px} px), f {m.f} "
                    f"cx {m.cx} cy {m.cy} ({m.focal})")
        frames = _perceive_videos(videos, _config(backend, models))
        dim("bundle adjustment...")
        command = shlex.join(["walkout", *sys.argv[1:]])
        try:
            data, _ = calibration_file(frames, cams, store.name, sv, command=command,
                                       videos=VIDEO_CAMERAS, backend=backend,
                                       survey_path=survey, intrinsics=measured,
                                       refine_intrinsics=refine_intrinsics,
                                       multi_start=intrinsics == "image")
            for st in data.provenance.relative_starts:
                dim(f"relative start {st.name}: cost {st.cost}, joints kept "
                    f"{st.joints_kept}{' (kept)' if st.kept else ''}")
            for cid, m in data.provenance.intrinsics.items():
                if m.refined is not None:
                    dim(f"{cid}: refined f {m.refined.f} cx {m.refined.cx} "
                        f"cy {m.refined.cy} (from f {m.f} cx {m.cx} cy {m.cy})")
            refuse_misfit(data, max_survey_px)
        except CalibrationError as e:
            raise _fail(f"{survey}: {e}; nothing written") from e
        try:
            write_camera_file(out, data)
        except OSError as e:  # the work is not lost: the camera file goes to stdout instead
            print(json.dumps(data.model_dump(mode="json"), indent=1, sort_keys=True))
            raise _fail(f"--out {out}: cannot write: {e.strerror or e} (the camera file is "
                        "printed above)") from e
        print(json.dumps({"out": str(out), **data.provenance.model_dump(
            include={"epipolar_px", "cameras", "intrinsics", "relative_starts"})}, indent=2))
