"""The one place HiGHS is driven: every ``highspy`` import of the package lives in this folder.

:mod:`.runtime`
    one quiet, single-threaded runtime (:func:`~.runtime.new_highs`, :func:`~.runtime.run`)
    and the options of every MILP (:func:`~.runtime.milp_options`);
:mod:`.matrix`
    one matrix builder (:func:`~.matrix.highs_with_model`);
:mod:`.lp`
    one LP kept across solves (:class:`~.lp.Lp`) and its rigorous dual bound
    (:func:`~.lp.lp_min`);
:mod:`.milp`
    one MILP run with cut-off, target and incumbents (:func:`~.milp.run_milp`);
:mod:`.status`
    the one table from a solver status to "proven or not" (:func:`~.status.cutoff_empty`,
    :func:`~.status.bound_proves`, :func:`~.status.decide`);
:mod:`.margins`
    the solver margins and the rounding doubt, with their maths.

Nothing is imported here, so ``import exactcomp.highs.margins`` does not load highspy.
"""
