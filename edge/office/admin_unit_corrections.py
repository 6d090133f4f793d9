"""Corrections to the packaged old-to-new table, each checked against the clause of the resolution that decides it.

The resolutions (Standing Committee 1654 to 1687/NQ-UBTVQH15, 16/6/2025, one per province; «k.» is the clause of
Article 1) are the authority; the data package (``vietnamadminunits``) is a transcription that is right for
nearly every old unit. Three kinds of fix, found by comparing it with the resolutions' text and with a second
transcription (``vietnam-provinces`` 2026.9.0, statistics-office codes; it needs Python >= 3.12, so it only served
the comparison) and read clause by clause:

* **namesakes**: two old units of one name (Phường 4 of Tây Ninh and of Tân An) whose provinces merged are given
  each other's receiving units by the package (it keys units by name). The resolution's clause names the district.
* **all residents**: «một phần diện tích tự nhiên, toàn bộ quy mô dân số của X»: X's land was divided, but every
  resident went to this one new unit, so for an address X maps exactly there.
* **land only**: «một phần diện tích tự nhiên của X» without «quy mô dân số»: the new unit got part of X's land
  and none of its people; no address of X is there, so it is not a candidate.

Every entry is old commune code -> new commune code(s) (Decision 19/2025/QĐ-TTg codes) with the resolution and
clause. Bump :data:`CORRECTIONS_VERSION` with any change: it is part of the mapping's ``data_version``.
"""

from __future__ import annotations

CORRECTIONS_VERSION = "2026-12.1"

#: Old units the package conflates with a namesake merged into the same new province: the receiving units the
#: resolution names for this one (old code -> new codes, clauses).
NAMESAKE_FIXES: dict[int, tuple[tuple[int, ...], str]] = {
    6079: ((6079,), "1672/NQ-UBTVQH15 k.10"),  # Xã Hồng Phong (H. Bình Gia) -> Xã Hồng Phong
    10798: ((10804, 10843), "1669/NQ-UBTVQH15 k.79, 112"),  # Xã Hòa Bình (H. Kim Thành) -> Xã Kim Thành, Xã Hà Nam
    11890: ((11911,), "1669/NQ-UBTVQH15 k.63"),  # Xã Hòa Bình (H. Vĩnh Bảo) -> Xã Nguyễn Bỉnh Khiêm
    25462: ((25459,), "1682/NQ-UBTVQH15 k.87"),  # Phường 4 (TP Tây Ninh) -> Phường Tân Ninh
    27691: ((27694,), "1682/NQ-UBTVQH15 k.84"),  # Phường 4 (TP Tân An) -> Phường Long An
    28036: ((28036,), "1682/NQ-UBTVQH15 k.20"),  # Thị trấn Thủ Thừa (H. Thủ Thừa) -> Xã Thủ Thừa
    28252: ((28249,), "1663/NQ-UBTVQH15 k.84"),  # Phường 4 (TP Mỹ Tho) -> Phường Đạo Thạnh
    28270: ((28270,), "1663/NQ-UBTVQH15 k.86"),  # Phường 6 (TP Mỹ Tho) -> Phường Thới Sơn
    28437: ((28435,), "1663/NQ-UBTVQH15 k.99"),  # Phường 3 (TX Cai Lậy) -> Phường Mỹ Phước Tây
    28439: ((28439,), "1663/NQ-UBTVQH15 k.101"),  # Phường 4 (TX Cai Lậy) -> Phường Cai Lậy
    29623: ((29623,), "1687/NQ-UBTVQH15 k.3"),  # Xã Mỹ An (H. Mang Thít) -> Xã Nhơn Phú
    29734: ((29734,), "1687/NQ-UBTVQH15 k.20"),  # Xã Hòa Lộc (H. Tam Bình) -> Xã Hòa Hiệp
    29902: ((29905,), "1663/NQ-UBTVQH15 k.98"),  # Phường 3 (TP Sa Đéc) -> Phường Sa Đéc
    29908: ((29905,), "1663/NQ-UBTVQH15 k.98"),  # Phường 4 (TP Sa Đéc) -> Phường Sa Đéc
    31246: ((31246,), "1668/NQ-UBTVQH15 k.43"),  # Xã Thạnh Quới (H. Vĩnh Thạnh) -> Xã Thạnh Quới
    31268: ((31288,), "1668/NQ-UBTVQH15 k.36"),  # Xã Tân Thạnh (H. Thới Lai) -> Xã Trường Thành
    31378: ((31378,), "1668/NQ-UBTVQH15 k.57"),  # Xã Phú Hữu (H. Châu Thành) -> Xã Phú Hữu
    31438: ((31408,), "1668/NQ-UBTVQH15 k.64"),  # Xã Tân Long (H. Phụng Hiệp) -> Xã Thạnh Hòa
    31474: ((31473,), "1668/NQ-UBTVQH15 k.18"),  # Xã Long Bình (TX Long Mỹ) -> Phường Long Bình
    31480: ((31480,), "1668/NQ-UBTVQH15 k.20"),  # Xã Long Phú (TX Long Mỹ) -> Phường Long Phú 1
    31483: ((31495,), "1668/NQ-UBTVQH15 k.50"),  # Xã Thuận Hưng (H. Long Mỹ) -> Xã Xà Phiên
    31582: ((31582,), "1668/NQ-UBTVQH15 k.80"),  # Xã Phú Tân (H. Châu Thành) -> Xã Thuận Hòa
    31606: ((31591,), "1668/NQ-UBTVQH15 k.84"),  # Xã Thuận Hưng (H. Mỹ Tú) -> Xã Mỹ Hương
    31657: ((31654,), "1668/NQ-UBTVQH15 k.69"),  # Xã Phú Hữu (H. Long Phú) -> Xã Trường Khánh
    31666: ((31666,), "1668/NQ-UBTVQH15 k.71"),  # Xã Tân Thạnh (H. Long Phú) -> Xã Tân Thạnh
    31669: ((31639,), "1668/NQ-UBTVQH15 k.72"),  # Xã Long Phú (H. Long Phú) -> Xã Long Phú
    31714: ((31726,), "1668/NQ-UBTVQH15 k.66"),  # Xã Thạnh Quới (H. Mỹ Xuyên) -> Xã Gia Hòa
    31741: ((31741,), "1668/NQ-UBTVQH15 k.85"),  # Xã Tân Long (TX Ngã Năm) -> Xã Tân Long
    31744: ((31741,), "1668/NQ-UBTVQH15 k.85"),  # Xã Long Bình (TX Ngã Năm) -> Xã Tân Long
}
#: «một phần diện tích tự nhiên, toàn bộ quy mô dân số»: every resident of the old unit went to this new unit.
ALL_RESIDENTS: dict[int, tuple[int, str]] = {
    316: (316, "1656/NQ-UBTVQH15 k.19"),  # Phường Đại Kim, Quận Hoàng Mai -> Phường Định Công
    607: (613, "1656/NQ-UBTVQH15 k.30"),  # Phường Tây Tựu, Quận Bắc Từ Liêm -> Phường Tây Tựu
    145: (145, "1656/NQ-UBTVQH15 k.39"),  # Phường Long Biên, Quận Long Biên -> Phường Long Biên
    661: (640, "1656/NQ-UBTVQH15 k.52"),  # Xã Yên Mỹ, Huyện Thanh Trì -> Xã Thanh Trì
    685: (685, "1656/NQ-UBTVQH15 k.54"),  # Xã Đông Mỹ, Huyện Thanh Trì -> Xã Nam Phù
    10444: (10459, "1656/NQ-UBTVQH15 k.74"),  # Xã Đồng Tâm, Huyện Mỹ Đức -> Xã Phúc Sơn
    9685: (9619, "1656/NQ-UBTVQH15 k.82"),  # Xã Thụy An, Huyện Ba Vì -> Xã Quảng Oai
    9802: (9817, "1656/NQ-UBTVQH15 k.107"),  # Xã Liên Hà, Huyện Đan Phượng -> Xã Ô Diên
    9796: (9817, "1656/NQ-UBTVQH15 k.107"),  # Xã Hồng Hà, Huyện Đan Phượng -> Xã Ô Diên
    9799: (9817, "1656/NQ-UBTVQH15 k.107"),  # Xã Liên Hồng, Huyện Đan Phượng -> Xã Ô Diên
    9808: (9817, "1656/NQ-UBTVQH15 k.107"),  # Xã Liên Trung, Huyện Đan Phượng -> Xã Ô Diên
    9787: (9787, "1656/NQ-UBTVQH15 k.108"),  # Xã Trung Châu, Huyện Đan Phượng -> Xã Liên Minh
    9793: (9787, "1656/NQ-UBTVQH15 k.108"),  # Xã Thọ Xuân, Huyện Đan Phượng -> Xã Liên Minh
    9790: (9787, "1656/NQ-UBTVQH15 k.108"),  # Xã Thọ An, Huyện Đan Phượng -> Xã Liên Minh
    565: (565, "1656/NQ-UBTVQH15 k.109"),  # Thị trấn Trâu Quỳ, Huyện Gia Lâm -> Xã Gia Lâm
    556: (562, "1656/NQ-UBTVQH15 k.110"),  # Xã Đặng Xá, Huyện Gia Lâm -> Xã Thuận An
    457: (475, "1656/NQ-UBTVQH15 k.113"),  # Xã Xuân Nộn, Huyện Đông Anh -> Xã Thư Lâm
    493: (493, "1656/NQ-UBTVQH15 k.116"),  # Xã Kim Chung, Huyện Đông Anh -> Xã Thiên Lộc
    499: (493, "1656/NQ-UBTVQH15 k.116"),  # Xã Đại Mạch, Huyện Đông Anh -> Xã Thiên Lộc
    490: (493, "1656/NQ-UBTVQH15 k.116"),  # Xã Kim Nỗ, Huyện Đông Anh -> Xã Thiên Lộc
    427: (376, "1656/NQ-UBTVQH15 k.122"),  # Xã Mai Đình, Huyện Sóc Sơn -> Xã Sóc Sơn
}
#: «một phần diện tích tự nhiên» without population: land only, no resident of the old unit lives in the new one.
LAND_ONLY: tuple[tuple[int, int, str], ...] = (
    (112, 4, "1656/NQ-UBTVQH15 k.3"),  # Phường Thụy Khuê, Quận Tây Hồ -> Phường Ba Đình
    (139, 97, "1656/NQ-UBTVQH15 k.14"),  # Phường Bồ Đề, Quận Long Biên -> Phường Hồng Hà
    (118, 97, "1656/NQ-UBTVQH15 k.14"),  # Phường Ngọc Thụy, Quận Long Biên -> Phường Hồng Hà
    (340, 328, "1656/NQ-UBTVQH15 k.15"),  # Phường Yên Sở, Quận Hoàng Mai -> Phường Lĩnh Nam
    (316, 337, "1656/NQ-UBTVQH15 k.20"),  # Phường Đại Kim, Quận Hoàng Mai -> Phường Hoàng Liệt
    (316, 364, "1656/NQ-UBTVQH15 k.23"),  # Phường Đại Kim, Quận Hoàng Mai -> Phường Khương Đình
    (643, 364, "1656/NQ-UBTVQH15 k.23"),  # Xã Tân Triều, Huyện Thanh Trì -> Phường Khương Đình
    (9853, 613, "1656/NQ-UBTVQH15 k.30"),  # Xã Kim Chung, Huyện Hoài Đức -> Phường Tây Tựu
    (613, 602, "1656/NQ-UBTVQH15 k.33"),  # Phường Minh Khai, Quận Bắc Từ Liêm -> Phường Đông Ngạc
    (613, 598, "1656/NQ-UBTVQH15 k.34"),  # Phường Minh Khai, Quận Bắc Từ Liêm -> Phường Thượng Cát
    (607, 598, "1656/NQ-UBTVQH15 k.34"),  # Phường Tây Tựu, Quận Bắc Từ Liêm -> Phường Thượng Cát
    (9862, 622, "1656/NQ-UBTVQH15 k.36"),  # Xã Vân Canh, Huyện Hoài Đức -> Phường Xuân Phương
    (139, 145, "1656/NQ-UBTVQH15 k.39"),  # Phường Bồ Đề, Quận Long Biên -> Phường Long Biên
    (130, 145, "1656/NQ-UBTVQH15 k.39"),  # Phường Gia Thụy, Quận Long Biên -> Phường Long Biên
    (151, 118, "1656/NQ-UBTVQH15 k.40"),  # Phường Phúc Đồng, Quận Long Biên -> Phường Bồ Đề
    (136, 127, "1656/NQ-UBTVQH15 k.41"),  # Phường Phúc Lợi, Quận Long Biên -> Phường Việt Hưng
    (670, 640, "1656/NQ-UBTVQH15 k.52"),  # Xã Duyên Hà, Huyện Thanh Trì -> Xã Thanh Trì
    (10192, 685, "1656/NQ-UBTVQH15 k.54"),  # Xã Duyên Thái, Huyện Thường Tín -> Xã Nam Phù
    (9619, 9661, "1656/NQ-UBTVQH15 k.81"),  # Thị trấn Tây Đằng, Huyện Ba Vì -> Xã Minh Châu
    (9667, 9661, "1656/NQ-UBTVQH15 k.81"),  # Xã Chu Minh, Huyện Ba Vì -> Xã Minh Châu
    (9922, 9982, "1656/NQ-UBTVQH15 k.94"),  # Xã Phú Cát, Huyện Quốc Oai -> Xã Hạ Bằng
    (9895, 10003, "1656/NQ-UBTVQH15 k.95"),  # Thị trấn Quốc Oai, Huyện Quốc Oai -> Xã Tây Phương
    (9907, 10003, "1656/NQ-UBTVQH15 k.95"),  # Xã Ngọc Liệp, Huyện Quốc Oai -> Xã Tây Phương
    (9904, 10003, "1656/NQ-UBTVQH15 k.95"),  # Xã Phượng Sơn, Huyện Quốc Oai -> Xã Tây Phương
    (9910, 9895, "1656/NQ-UBTVQH15 k.98"),  # Xã Ngọc Mỹ, Huyện Quốc Oai -> Xã Quốc Oai
    (607, 9832, "1656/NQ-UBTVQH15 k.102"),  # Phường Tây Tựu, Quận Bắc Từ Liêm -> Xã Hoài Đức
    (9820, 9832, "1656/NQ-UBTVQH15 k.102"),  # Xã Tân Lập, Huyện Đan Phượng -> Xã Hoài Đức
    (9880, 9871, "1656/NQ-UBTVQH15 k.104"),  # Xã An Thượng, Huyện Hoài Đức -> Xã Sơn Đồng
    (9013, 9817, "1656/NQ-UBTVQH15 k.107"),  # Xã Văn Khê, Huyện Mê Linh -> Xã Ô Diên
    (9796, 9787, "1656/NQ-UBTVQH15 k.108"),  # Xã Hồng Hà, Huyện Đan Phượng -> Xã Liên Minh
    (9007, 9787, "1656/NQ-UBTVQH15 k.108"),  # Xã Tiến Thịnh, Huyện Mê Linh -> Xã Liên Minh
    (583, 565, "1656/NQ-UBTVQH15 k.109"),  # Xã Bát Tràng, Huyện Gia Lâm -> Xã Gia Lâm
    (502, 466, "1656/NQ-UBTVQH15 k.115"),  # Xã Vĩnh Ngọc, Huyện Đông Anh -> Xã Phúc Thịnh
    (9019, 493, "1656/NQ-UBTVQH15 k.116"),  # Xã Tiền Phong, Huyện Mê Linh -> Xã Thiên Lộc
    (508, 493, "1656/NQ-UBTVQH15 k.116"),  # Xã Hải Bối, Huyện Đông Anh -> Xã Thiên Lộc
    (8974, 9022, "1656/NQ-UBTVQH15 k.118"),  # Xã Đại Thịnh, Huyện Mê Linh -> Xã Mê Linh
    (9796, 9022, "1656/NQ-UBTVQH15 k.118"),  # Xã Hồng Hà, Huyện Đan Phượng -> Xã Mê Linh
    (9013, 8980, "1656/NQ-UBTVQH15 k.119"),  # Xã Văn Khê, Huyện Mê Linh -> Xã Yên Lãng
    (445, 376, "1656/NQ-UBTVQH15 k.122"),  # Xã Phú Minh, Huyện Sóc Sơn -> Xã Sóc Sơn
    (409, 376, "1656/NQ-UBTVQH15 k.122"),  # Xã Quang Tiến, Huyện Sóc Sơn -> Xã Sóc Sơn
    (21634, 21628, "1664/NQ-UBTVQH15 k.37"),  # Xã An Nghĩa, Huyện An Lão -> Xã An Hòa
    (11518, 11488, "1669/NQ-UBTVQH15 k.6"),  # Xã Quang Trung, Thành phố Thủy Nguyên -> Phường Lưu Kiếm
    (11341, 11311, "1669/NQ-UBTVQH15 k.8"),  # Phường Gia Viên, Quận Ngô Quyền -> Phường Hồng Bàng
    (11656, 11446, "1669/NQ-UBTVQH15 k.17"),  # Thị trấn Trường Sơn, Huyện An Lão -> Phường Phù Liễn
    (11740, 11455, "1669/NQ-UBTVQH15 k.19"),  # Phường Tân Thành, Quận Dương Kinh -> Phường Đồ Sơn
    (23053, 23041, "1671/NQ-UBTVQH15 k.46"),  # Xã Hòa Thắng, Huyện Bắc Bình -> Xã Hồng Thái
    (6799, 6799, "1679/NQ-UBTVQH15 k.3"),  # Xã Hải Hòa, Thành phố Cẩm Phả -> Xã Hải Hòa
    (7180, 7168, "1679/NQ-UBTVQH15 k.33"),  # Xã Liên Hòa, Thị xã Quảng Yên -> Phường Hà An
    (27016, 27439, "1685/NQ-UBTVQH15 k.41"),  # Phường Sơn Kỳ, Quận Tân Phú -> Phường Bình Hưng Hòa
    (26833, 26842, "1685/NQ-UBTVQH15 k.71"),  # Phường Long Thạnh Mỹ, Thành phố Thủ Đức -> Phường Tăng Nhơn Phú
    (15772, 15796, "1686/NQ-UBTVQH15 k.42"),  # Thị trấn Thiệu Hóa, Huyện Thiệu Hóa -> Xã Thiệu Quang
    (11411, 11413, "1669/NQ-UBTVQH15 k.14"),  # Phường Đông Hải 2, Quận Hải An -> Phường Hải An
    (11008, 11002, "1669/NQ-UBTVQH15 k.31"),  # Xã Thống Nhất, Huyện Gia Lộc -> Phường Thạch Khôi
    (10816, 10660, "1669/NQ-UBTVQH15 k.33"),  # Xã Hồng Lạc, Huyện Thanh Hà -> Phường Ái Quốc
    (10585, 10549, "1669/NQ-UBTVQH15 k.34"),  # Phường Văn Đức, Thành phố Chí Linh -> Phường Chu Văn An
    (10639, 10705, "1669/NQ-UBTVQH15 k.70"),  # Xã Cộng Hòa, Huyện Nam Sách -> Xã Nam An Phụ
    (10798, 10843, "1669/NQ-UBTVQH15 k.79"),  # Xã Hòa Bình, Huyện Kim Thành -> Xã Hà Nam
    (10993, 10972, "1669/NQ-UBTVQH15 k.87"),  # Xã Thái Hòa, Huyện Bình Giang -> Xã Đường An
    (11242, 10993, "1669/NQ-UBTVQH15 k.88"),  # Xã Thanh Tùng, Huyện Thanh Miện -> Xã Thượng Hồng
    (11251, 10993, "1669/NQ-UBTVQH15 k.88"),  # Xã Đoàn Tùng, Huyện Thanh Miện -> Xã Thượng Hồng
    (11041, 10999, "1669/NQ-UBTVQH15 k.89"),  # Xã Lê Lợi, Huyện Gia Lộc -> Xã Gia Lộc
    (11071, 11050, "1669/NQ-UBTVQH15 k.91"),  # Xã Quang Đức, Huyện Gia Lộc -> Xã Gia Phúc
    (11239, 11065, "1669/NQ-UBTVQH15 k.92"),  # Thị trấn Thanh Miện, Huyện Thanh Miện -> Xã Trường Tân
    (11086, 11113, "1669/NQ-UBTVQH15 k.94"),  # Xã Hưng Đạo, Huyện Tứ Kỳ -> Xã Tân Kỳ
)
