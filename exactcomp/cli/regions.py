"""``exactcomp regions``: count or bound the linear regions."""

from __future__ import annotations

import argparse

from rich.console import Console

from ..errors import InvalidOptionError
from .common import (
    EXIT_OK,
    TABLE_COLUMNS,
    check_positive,
    domain_boxes,
    input_paths,
    progress_display,
)


def cmd_regions(args: argparse.Namespace, console: Console) -> int:
    from .. import api
    from ..io.atomic import check_output_path
    from ..regions import Plane, parse_plane
    from ..report import write_document
    from .tables import count_text, regions_table

    check_positive("--limit", args.limit)
    check_positive("--jobs", args.jobs)
    check_positive("--time-limit", args.time_limit)
    inputs = input_paths(args)
    if args.report:
        check_output_path(args.report, inputs)
    if args.plot:
        check_output_path(args.plot, inputs, outputs=[args.report])
    if args.plot and not args.plot.lower().endswith(".png"):
        raise InvalidOptionError(f"--plot writes PNG; give a .png path, got {args.plot!r}")
    net = api.load(args.model, trust_pickle=args.trust_pickle, nnet_units=args.nnet_units)
    boxes = domain_boxes(args, net.input_size, console)
    plane = None
    if args.plane is not None:
        if not args.plot:
            raise InvalidOptionError("--plane chooses the slice for --plot; give --plot too")
        plane = parse_plane(args.plane, boxes[0])
    elif args.plot:
        if net.input_size < 2:
            raise InvalidOptionError(
                f"--plot draws a 2-D slice; the network has {net.input_size} input"
            )
        plane = Plane.axes(boxes[0], 0, 1)
    with progress_display(args, console) as progress:
        res = api.count_regions(
            net,
            boxes,
            limit=args.limit,
            jobs=args.jobs,
            exact=not args.bounds_only,
            stability=args.stability,
            time_limit=args.time_limit,
            samples=args.samples,
            lines=args.lines,
            keep_cells=bool(args.plot or args.graph) and net.input_size == 2 and not args.plane,
            seed=args.seed,
            progress=progress,
        )
    doc = res.to_json()
    if args.quiet:  # the result on one line
        how = "exact" if doc["exact"] else f"stopped: {doc['stopped']}"
        console.print(
            f"{doc['regions']:,} regions ({how}); "
            f"bounds [{count_text(doc['lower_bound'])}, {count_text(doc['upper_bound'])}]"
        )
    else:
        console.print(regions_table(doc), width=min(console.width, TABLE_COLUMNS))
    if args.graph and plane is None:
        if net.input_size != 2:
            raise InvalidOptionError("--graph needs 2 inputs, or --plot (the graph of the slice)")
        plane = Plane.axes(boxes[0], 0, 1)
    if plane is not None:
        from ..regions.drawing import draw_regions

        whole = net.input_size == 2 and args.plane is None
        drawing = draw_regions(net, boxes[0], res, plane, whole, args.plot, args.graph, args.limit)
        doc.update(drawing.to_json())
        for line in drawing.lines:
            console.print(line)
    if args.report:
        write_document(args.report, "regions", doc)
    return EXIT_OK
