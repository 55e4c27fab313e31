from __future__ import annotations

from decimal import Decimal

from core.reference import read_fixture


def load_accelerators(Accelerator) -> int:
    """Insert the accelerator models that are not there yet. Returns the count in the file."""
    existing = set(Accelerator.objects.values_list("name", flat=True))
    rows = read_fixture("accelerators.csv")
    Accelerator.objects.bulk_create(
        [
            Accelerator(
                name=row["model"],
                aliases=row["aliases"],
                vendor=row["vendor"],
                domestic=row["domestic"] == "yes",
                fp16_dense_tflops=Decimal(row["fp16_dense_tflops"]) if row["fp16_dense_tflops"] else None,
                memory_gb=int(row["memory_gb"]) if row["memory_gb"] else None,
                form=row["form"],
                source=row["source"],
            )
            for row in rows
            if row["model"] not in existing
        ]
    )
    return len(rows)
