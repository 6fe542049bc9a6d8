"""The audit's engine: per-query rank counts from one blocked pass over the score product.

What it counts. n pairs (image i belongs with report i); a query is an image
(``image_to_report``) or a report (``report_to_image``) scored by cosine
against all n candidates of the other side. Per query, per level and per
kind of negatives (:class:`~.counts.RankCounts`, int64):

* ``study`` level: the truth is the query's own pair, score t = S_ii;
  ``patient`` level: the truth set is every pair of the query's patient
  (``truth_size`` = m_p), and the one that counts scores best, t = its score.
* ``available``: the distractors a pool may draw from: the n - 1 other
  candidates (study), the n - m_p candidates of other patients (patient), or
  those within the query's label group (hard negatives: each grouping refines
  the one before, so rows sorted by all of them make every group a run).
* ``above``: distractors scoring more than t + ``tie_tol``; ``tied``:
  distractors whose embedding is bitwise identical to the truth's. A
  distinct embedding within ``tie_tol`` of t neither outranks nor ties (the
  truth gets the benefit of a difference float32 cannot resolve); ``tie_tol``
  > 0, so a duplicate is never counted both ways.

Exactness and determinism. Counts are integers. The product is formed in
tiles on one global grid, so every score comes from the same product of the
same shapes whatever the memory budget, the slabs, the process split or a
resumed run: the counts are those of one in-core pass, bit for bit, and add
up exactly across processes and work-folder blocks. The pair's own cell is
the one truth score ``diag`` everywhere. Nothing here draws a random number.
Memory: a few integers and codes per query
(:func:`relink.retrieval.memory.state_bytes`); arrays are read in blocks
sized by the budget of :class:`~relink.retrieval.scale.Scale`.

Modules: :mod:`.counts` (:func:`count_ranks`, the entry), :mod:`.rows`,
:mod:`.pairs` (truth scores, identical rows), :mod:`.patients`,
:mod:`.product` (the blocked pass), :mod:`.tiles` and :mod:`.backends`.

    counts = count_ranks(Rows(image, text, patient, groupings), spec, scale)
"""

from .counts import ConfidentCounts, Counts, RankCounts, count_ranks, sort_groupings  # noqa: F401
from .pairs import identical_rows  # noqa: F401
from .rows import Rows, pick_device  # noqa: F401
