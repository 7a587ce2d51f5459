"""The read side: what a run folder says (``read``, ``figures``), the end-of-run summary
(``summary``), the HTML report (``report``) and the pairs printed by ``humpback inspect`` (``pairs``)."""
