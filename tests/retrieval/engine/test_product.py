"""The blocked pass over the product: query rows split across the processes of a group."""


def test_query_rows_split_into_nearly_equal_runs():
    from relink.retrieval.engine.product import split_rows

    units = [(a, min(1000, a + 64)) for a in range(0, 1000, 64)]
    for world in (1, 2, 3, 7):
        parts = split_rows(units, world)
        assert [u for p in parts for u in p] == units  # every unit once, in order, runs contiguous
        sizes = [sum(b - a for a, b in p) for p in parts]
        assert max(sizes) - min(sizes) <= 2 * 64
