"""Perception commands: `walkout perceive`, `walkout models check`, `walkout aifi video`,
`walkout bench perception` (issue 9)."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from walkout.commands import finite, json_path_checked, print_json
from walkout.commands.say import dim, error, mark, note, say

BackendOpt = Annotated[str, typer.Option(
    "--backend", help="pose backend: movenet (CPU default), openvino-hpe, onnx")]
ModelsOpt = Annotated[Path | None, typer.Option(
    "--models", help="models directory (default: ../shared/models beside the checkout)")]


def _config(backend: str, models: Path | None, onnx_model: str = "", **extra: Any) -> Any:
    from pydantic import ValidationError

    from walkout.perception.config import PerceptionConfig, first_error

    fields: dict[str, Any] = {"backend": backend, **extra}
    if models is not None:
        fields["models_dir"] = models
    if onnx_model:
        fields["onnx"] = {"path": onnx_model}
    try:
        return PerceptionConfig(**fields)
    except ValidationError as e:
        error(f"perception config: {first_error(e, 'config')}")
        raise typer.Exit(2) from e


def _fail(msg: str) -> typer.Exit:
    error(str(msg))
    return typer.Exit(2)


def _perceive_videos(videos: Path, cfg: Any) -> dict[str, Any]:
    """Keypoint frames of each cps-test-01 camera's video (camera id → frames); a video or
    model that cannot be read is a clean CLI error."""
    from walkout.perception.aifi_video import VIDEO_CAMERAS
    from walkout.perception.backends import ModelError
    from walkout.perception.run import perceive_video
    from walkout.perception.sources import SourceError

    frames = {}
    try:
        for cam, name in VIDEO_CAMERAS.items():
            dim(f"perception {cam}...")
            frames[cam] = perceive_video(videos / name, cam, None, cfg).frames
    except (SourceError, ModelError) as e:
        raise _fail(str(e)) from e
    return frames


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by the first Ctrl-C or SIGTERM, so a live run ends by writing what it has;
    a second Ctrl-C interrupts at once."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        dim(f"{signal.Signals(signum).name}: stopping; Ctrl-C again aborts "
            "without writing")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _load_notes(stats: dict[str, Any]) -> list[str]:
    """What the run lost to load or outages, said on the terminal and not only in the JSON."""
    notes = []
    if stats.get("skipped"):
        notes.append(f"{stats['skipped']} of {stats['frames_in']} frames skipped (evenly) "
                     "because inference was slower than the frame rate")
    if stats.get("dropped_behind"):
        notes.append(f"{stats['dropped_behind']} of {stats['grabbed']} frames grabbed were "
                     "dropped because inference was slower than the camera")
    if stats.get("outages_s"):
        o = stats["outages_s"]
        notes.append(f"the stream was lost {len(o)} times, {sum(o):.1f} s in all "
                     f"(longest {max(o):.1f} s)")
    if stats.get("lag_s", 0) > 1.0:
        notes.append(f"the replay ended {stats['lag_s']:.1f} s behind the video's clock: "
                     "reading the video alone is slower than its frame rate")
    return notes


def register(app: typer.Typer, bench_app: typer.Typer, store_app: typer.Typer,
             aifi_app: typer.Typer) -> None:
    models_app = typer.Typer(no_args_is_help=True, help="Pose models of the perception stage.")
    app.add_typer(models_app, name="models")

    @models_app.command("check")
    def models_check(
        models_dir: Annotated[Path | None, typer.Option(
            "--dir", help="models directory (default: ../shared/models)")] = None,
        onnx_model: Annotated[str, typer.Option(
            "--onnx-model", help="also check this ONNX model (path under --dir)")] = "",
    ) -> None:
        """Load and run every backend's model once; exit 1 when one is missing or broken."""
        from walkout.perception.config import DEFAULT_MODELS_DIR
        from walkout.perception.models import check_models

        root = models_dir or DEFAULT_MODELS_DIR
        if not root.is_dir():
            raise _fail(f"models directory not found: {root}")
        statuses = check_models(root, onnx_model)
        for s in statuses:
            mark(s.ok, f"{s.backend}: {s.path or '-'}: {s.detail}")
        if not all(s.ok for s in statuses):
            raise typer.Exit(1)

    @app.command()
    def perceive(
        camera: Annotated[str, typer.Option("--camera", help="camera id in the store")],
        store: Annotated[str, typer.Option("--store", help="store name or YAML path")],
        out: Annotated[Path | None, typer.Option(
            "--out", help="recording directory to write/extend (at the end of the run)")]
        = None,
        mqtt_url: Annotated[str | None, typer.Option(
            "--mqtt", help="publish each frame as it is made to the store's engine: "
            "mqtt://HOST:PORT or mqtt://HOST:PORT/STORE (STORE: the store's name on the "
            "wire, default the store file's); with it --out is optional")] = None,
        video: Annotated[Path | None, typer.Option(
            "--video", help="video file (read whole)")] = None,
        stream: Annotated[str | None, typer.Option(
            "--stream", help="live source: rtsp://, http://, or a file played at its frame "
            "rate; read until --duration, Ctrl-C or SIGTERM, then written")]
        = None,
        duration: Annotated[float | None, typer.Option(
            min=0.1, callback=finite, help="stop a --stream after this many seconds")] = None,
        connect_timeout: Annotated[float, typer.Option(
            min=0.1, callback=finite, help="fail if --stream gives no frame within this many "
            "seconds; once it has, a lost stream is reconnected until stopped")] = 30.0,
        realtime: Annotated[bool, typer.Option(
            help="replay --video at its frame rate; skip frames evenly if inference is slower")]
        = False,
        backend: BackendOpt = "movenet",
        models: ModelsOpt = None,
        onnx_model: Annotated[str, typer.Option(help="ONNX model under --models")] = "",
    ) -> None:
        """Video → keypoint frames, written as a recording that `walkout replay` runs, and/or
        published live to the store's engine over MQTT (`walkout serve --source mqtt://…`)."""
        from walkout.perception.backends import ModelError
        from walkout.perception.output import write_keypoint_recording
        from walkout.perception.publish import BrokerError, KeypointPublisher
        from walkout.perception.run import perceive_stream, perceive_video
        from walkout.perception.sources import SourceError
        from walkout.sources.mqtt import split_url
        from walkout.sources.recording import RecordingError
        from walkout.store import StoreFileError, load_store

        if (video is None) == (stream is None):
            raise _fail("give exactly one of --video FILE or --stream URL")
        if out is None and mqtt_url is None:
            raise _fail("give --out DIR, --mqtt mqtt://HOST:PORT/STORE, or both")
        broker = wire_name = None
        if mqtt_url is not None:
            try:
                broker, wire_name = split_url(mqtt_url)
            except ValueError as e:
                raise _fail(f"--mqtt: {e}") from e
        try:
            st = load_store(store)
        except StoreFileError as e:
            raise _fail(str(e)) from e
        if camera not in st.cameras_by_id:
            raise _fail(f"camera {camera!r} is not in store '{st.name}' "
                        f"(cameras: {', '.join(st.cameras_by_id)})")
        cfg = _config(backend, models, onnx_model)
        pub = None
        if broker is not None:
            try:  # before the model loads: a wrong URL fails at once
                pub = KeypointPublisher(broker, wire_name or st.name, camera)
            except BrokerError as e:
                raise _fail(f"--mqtt {mqtt_url}: {e}") from e
        keep = out is not None  # publishing alone holds no frame: a camera runs all day
        ends = "stops" + (" and writes the recording" if keep else "")
        stats: dict[str, Any] = {}
        try:
            if video is not None and pub is None:
                res = perceive_video(video, camera, st.cameras_by_id[camera], cfg,
                                     realtime=realtime)
            elif video is not None:
                with _stop_on_signals() as stop:
                    res = perceive_video(video, camera, st.cameras_by_id[camera], cfg,
                                         realtime=realtime, sink=pub, keep=keep, stop=stop)
            else:
                assert stream is not None
                with _stop_on_signals() as stop:
                    res = perceive_stream(
                        stream, camera, st.cameras_by_id[camera], cfg, duration_s=duration,
                        connect_s=connect_timeout, stop=stop, sink=pub, keep=keep,
                        on_origin=None if pub is None else pub.set_origin,
                        started=lambda: dim(f"reading {stream}; Ctrl-C or SIGTERM "
                                            f"{ends}"))
            stats = dict(res.stats)
            if stream is not None and not res.stats.get("grabbed"):
                # nothing came: a recording of zero frames would look like an empty store
                raise _fail(f"no frame was read from {stream} (see the log above)")
            if pub is not None:  # flushed before the recording is written: both are done
                stats |= pub.close()
            n = write_keypoint_recording(out, st, res.frames, stats) if out else 0
        except (SourceError, ModelError, RecordingError, OSError) as e:
            raise _fail(str(e)) from e
        finally:
            if pub is not None:
                pub.close()
        print(json.dumps(stats))
        for line in _load_notes(stats):
            note(line)
        if out is not None:
            say(f"{len(res.frames)} keypoint frames of {camera} -> {out} ({n} in all)")
        if pub is not None:
            say(f"{stats['mqtt_published']} keypoint frames of {camera} -> "
                f"{stats['mqtt_topic']} on {broker}"
                + (f"; {stats['mqtt_unacked']} never acknowledged by the broker"
                         if stats["mqtt_unacked"] else ""))

    @app.command()
    def evidence(
        video: Annotated[Path, typer.Option("--video", help="the camera's video file")],
        camera: Annotated[str, typer.Option("--camera", help="camera id (names the clips)")],
        cases: Annotated[Path, typer.Option(
            "--cases", help="`walkout replay` output: its review_cases are cut")],
        out: Annotated[Path, typer.Option(
            "--out", help="clip folder (the service's evidence_dir: purged with the log)")],
        stream: Annotated[str | None, typer.Option(
            "--stream", help="the engine stream of the cases, as the service names it "
            "(`walkout serve --source recording --recording DIR`: recording:<DIR's name>); "
            "case ids repeat across streams, so it names the clips. Without it they are "
            "named by case id alone, shown only while one stream has a case of the id")]
        = None,
        pre: Annotated[float, typer.Option(help="seconds before the event")] = 3.0,
        post: Annotated[float, typer.Option(help="seconds after the event")] = 3.0,
        blur: Annotated[str, typer.Option(
            help="frame: blur every frame whole; boxes: blur the people the pose backend "
            "finds (a frame with nobody found is blurred whole)")] = "frame",
        backend: BackendOpt = "movenet",
        models: ModelsOpt = None,
    ) -> None:
        """Blurred evidence clips around each review case of a replay, from one camera's
        video (video time is engine time, as in `walkout perceive`)."""
        from walkout.perception.backends import ModelError, create_backend
        from walkout.perception.clips import ClipRequest, cut_clips
        from walkout.perception.evidence import case_clip_stem
        from walkout.perception.sources import SourceError

        if blur not in ("frame", "boxes"):
            raise _fail(f"--blur must be 'frame' or 'boxes', got {blur!r}")
        if stream is not None and not stream.strip():
            raise _fail("--stream is empty: name the engine stream of the cases")
        try:
            listed = json.loads(cases.read_text())["review_cases"]
            moments = [(str(c["case_id"]), float(c["t"])) for c in listed]
        except FileNotFoundError as e:
            raise _fail(f"{cases}: no such file") from e
        except OSError as e:  # a directory, no permission
            raise _fail(f"{cases}: cannot read the cases: {e.strerror or e}") from e
        except (ValueError, KeyError, TypeError) as e:
            raise _fail(f"{cases}: not a `walkout replay` output with review_cases ({e})") from e
        try:
            requests = [ClipRequest(case_clip_stem(stream, cid, camera), t) for cid, t in moments]
        except ValueError as e:
            raise _fail(str(e)) from e
        if stream is None:
            note("no --stream: the clips are named by case id alone; the "
                 "review page shows them only while one stream has a case of the id")
        try:
            pose = create_backend(_config(backend, models)) if blur == "boxes" else None
            written, missed = cut_clips(video, requests, out, pre_s=pre, post_s=post, mode=blur,
                                        backend=pose)
        except (SourceError, ModelError, OSError, ValueError) as e:
            raise _fail(str(e)) from e
        print(json.dumps({"clips": [str(p) for p in written], "not_in_video": missed}))
        say(f"{len(written)} clips of {len(requests)} cases -> {out}"
            + (f"; {len(missed)} outside the video" if missed else ""))

    @bench_app.command("perception")
    def bench_perception(
        json_path: Annotated[Path | None, typer.Option(
            "--json", help="also write JSON here", callback=json_path_checked)] = None,
        frames: Annotated[int, typer.Option(help="frames per stream")] = 100,
        streams: Annotated[int, typer.Option(help="streams at once (1-4 cps-test-01 videos)")]
        = 4,
        videos: Annotated[Path | None, typer.Option(
            help="AiFi videos directory (default ../shared/data/aifi-autocheckout/videos)")]
        = None,
        models: ModelsOpt = None,
        onnx_model: Annotated[str, typer.Option(help="also bench this ONNX model")] = "",
    ) -> None:
        """Pose fps per backend on the real AiFi footage (one and several streams), agreement."""
        from walkout.perception.bench import run_perception_bench
        from walkout.perception.config import DEFAULT_MODELS_DIR

        vdir = videos or DEFAULT_MODELS_DIR.parent / "data" / "aifi-autocheckout" / "videos"
        try:
            figures = run_perception_bench(vdir, models or DEFAULT_MODELS_DIR, frames,
                                           streams=max(1, min(streams, 4)),
                                           onnx_model=onnx_model,
                                           progress=lambda m: dim(f"{m}..."))
        except FileNotFoundError as e:
            raise _fail(str(e)) from e
        print_json(figures, json_path)

    @aifi_app.command("video")
    def aifi_video(
        videos: Annotated[Path, typer.Argument(help="directory of the cps-test-01 videos")],
        json_path: Annotated[Path | None, typer.Option(
            "--json", help="report JSON to write", callback=json_path_checked)] = None,
        docs: Annotated[Path | None, typer.Option(
            help="write the 3D track (JSON) and its plan (PNG) here")] = None,
        backend: BackendOpt = "movenet",
        models: ModelsOpt = None,
        frames: Annotated[int | None, typer.Option(help="only the first N frames per video")]
        = None,
        cameras: Annotated[Path | None, typer.Option(
            "--cameras", help="camera file from `walkout aifi calibrate` (default: the shipped "
            "cps-test-01 calibration when there is one, else the store file's cameras)")]
        = None,
    ) -> None:
        """cps-test-01 from video alone: perception, 3D tracking, shelf interactions."""
        from walkout.perception.aifi_video import draw_plan, run_aifi_video, write_track
        from walkout.perception.backends import ModelError
        from walkout.perception.camera_file import CameraFileError
        from walkout.perception.sources import SourceError

        cfg = _config(backend, models)
        try:
            report, tracks, _, store = run_aifi_video(
                videos, cfg, limit=frames, progress=lambda m: dim(f"{m}..."),
                cameras=cameras)
        except (SourceError, ModelError, CameraFileError) as e:
            raise _fail(str(e)) from e
        if docs is not None:
            write_track(tracks, docs / "aifi-cps-test-01-track.json")
            draw_plan(store, tracks, report["interactions"], docs / "aifi-cps-test-01-plan.png")
        print_json(report, json_path)

    @aifi_app.command("check-calibration")
    def aifi_check_calibration(
        videos: Annotated[Path, typer.Argument(help="directory of the cps-test-01 videos")],
        json_path: Annotated[Path | None, typer.Option(
            "--json", help="report JSON to write", callback=json_path_checked)] = None,
        backend: BackendOpt = "movenet",
        models: ModelsOpt = None,
        top: Annotated[int, typer.Option(help="best camera assignments to list")] = 3,
    ) -> None:
        """Does aifi-nanostore's calibration fit the footage? Median epipolar error (px) of the
        shopper's joints per camera pair, as labelled and for the best relabelling."""
        from walkout.perception.calib_check import best_assignment, score
        from walkout.store import load_store

        store = load_store("aifi-nanostore")
        frames = _perceive_videos(videos, _config(backend, models))
        cams = store.cameras_by_id
        labelled = score(frames, cams, {v: v for v in frames})
        ranked = best_assignment(frames, cams)
        report = {
            "labelled": [{"videos": [s.video_a, s.video_b], "pairs": s.pairs,
                          "median_px": s.median_px} for s in labelled],
            "best": [{"mean_median_px": round(m, 1), "assignment": a} for m, a in ranked[:top]],
        }
        print_json(report, json_path)
