from __future__ import annotations

from core.reference import read_fixture


def load_industry_classes(IndustryClass) -> int:
    """Upsert GB/T 4754-2017 and mark the digital-economy core classes. Returns the count."""
    core = {row["gbt4754_code"]: row for row in read_fixture("digital-economy-core-2021.csv")}
    existing = set(IndustryClass.objects.values_list("code", flat=True))
    objects = []
    for row in read_fixture("gbt4754-2017.csv"):
        in_core = core.get(row["code"])
        objects.append(
            IndustryClass(
                code=row["code"],
                level=int(row["level"]),
                section=row["section"],
                division=row["division"],
                group=row["group"],
                name=row["name"],
                remark=row["remark"],
                digital_core=in_core is not None,
                digital_category=in_core["category"] if in_core else "",
                digital_category_name=in_core["category_name"] if in_core else "",
                digital_scope=in_core["scope"] if in_core else "",
            )
        )
    IndustryClass.objects.bulk_create([obj for obj in objects if obj.code not in existing], batch_size=500)
    return len(objects)
