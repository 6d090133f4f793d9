"""Every word the officers' pages show, Vietnamese first, English beside it (the ``lang`` toggle picks one).

The verdict's own words come from :data:`edge.protocol.verify.checks.VERDICT_WORDS`, so the terminal, the commands
and the screen say the same; this module holds the rest: field labels in the order the procedure forms use,
check names, terminal states and progress, and the pages' own text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Lang = Literal["vi", "en"]
LANGS: tuple[Lang, ...] = ("vi", "en")

#: The citizen's fields in the order of the procedure forms (the form's "Họ, chữ đệm và tên" first); "Copy all"
#: copies them in this order.
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("full_name", "Họ, chữ đệm và tên", "Full name"),
    ("date_of_birth", "Ngày, tháng, năm sinh", "Date of birth"),
    ("sex", "Giới tính", "Sex"),
    ("id_number", "Số định danh cá nhân", "Personal ID number"),
    ("old_id_number", "Số CMND cũ", "Old ID number"),
    ("date_of_issue", "Ngày cấp", "Date of issue"),
    ("date_of_expiry", "Có giá trị đến", "Valid until"),
    ("nationality", "Quốc tịch", "Nationality"),
    ("ethnicity", "Dân tộc", "Ethnicity"),
    ("religion", "Tôn giáo", "Religion"),
    ("place_of_origin", "Quê quán", "Place of origin"),
    ("place_of_residence", "Nơi thường trú", "Place of residence"),
    ("place_of_birth_registration", "Nơi đăng ký khai sinh", "Place of birth registration"),
    ("father_name", "Họ tên cha", "Father"),
    ("mother_name", "Họ tên mẹ", "Mother"),
    ("spouse_name", "Họ tên vợ/chồng", "Spouse"),
    ("identifying_marks", "Đặc điểm nhận dạng", "Identifying marks"),
)

CHECKS: Mapping[str, tuple[str, str]] = {
    "sod_signature": ("Chữ ký trên dữ liệu chip (SOD)", "Signature over the chip data (SOD)"),
    "ds_validity": ("Hiệu lực chứng thư người ký", "Document Signer certificate validity"),
    "ds_chain": ("Nguồn phát hành (chuỗi tin cậy CSCA)", "Issuer (chain to the CSCA)"),
    "ds_revocation": ("Thu hồi chứng thư người ký", "Document Signer revocation"),
    "dg_hashes": ("Dữ liệu chip nguyên vẹn", "Chip data intact (hashes)"),
    "chip_authentication": ("Xác thực chip (chống nhân bản)", "Chip authentication (anti-cloning)"),
    "active_authentication": ("Xác thực chủ động của chip", "Active authentication"),
    "mrz_vs_dg13": ("Vùng MRZ khớp dữ liệu chip", "MRZ matches the chip's data"),
    "qr_vs_dg13": ("Mã QR khớp dữ liệu chip", "QR matches the chip's data"),
    "id_number_structure": ("Cấu trúc số định danh", "ID number structure"),
}

STATUSES: Mapping[str, tuple[str, str]] = {
    "passed": ("Đạt", "passed"),
    "failed": ("Không đạt", "failed"),
    "not_supported": ("Thẻ không hỗ trợ", "not supported by the card"),
    "not_performed": ("Không thực hiện", "not performed"),
    "issuer_not_trusted": ("Chưa xác minh nguồn phát hành", "issuer not proven"),
    "known_signer": ("Người ký đã biết", "known signer"),
}

TERMINAL_STATES: Mapping[str, tuple[str, str]] = {
    "ready": ("Sẵn sàng", "ready"),
    "wait_card": ("Đang chờ thẻ: đặt thẻ lên đầu đọc", "waiting for the card: place it on the reader"),
    "wait_key": ("Đang chờ mã QR", "waiting for the QR"),
    "reading": ("Đang đọc chip…", "reading the chip…"),
    "hold_still": ("Thẻ bị nhấc ra: đặt lại và giữ yên", "card lifted: put it back and hold it still"),
    "verifying": ("Đang xác minh…", "verifying…"),
    "result_ok": ("Đã có kết quả", "result ready"),
    "result_unproven": ("Đã có kết quả", "result ready"),
    "result_failed": ("Đã có kết quả", "result ready"),
    "fault": ("Lỗi thiết bị", "device fault"),
    "starting": ("Đang khởi động", "starting"),
}

#: What the terminal's lights say (its status's ``indicator``: the README's "Indicator patterns"), for the fleet.
INDICATORS: Mapping[str, tuple[str, str]] = {
    "ready": ("Sẵn sàng", "ready"),
    "scanning": ("Đang đọc", "reading"),
    "hold_still": ("Giữ yên thẻ", "hold the card still"),
    "success": ("Thẻ thật", "genuine"),
    "unproven": ("Chưa xác minh nguồn", "issuer not proven"),
    "failure": ("Không đạt", "failed"),
    "offline_queued": ("Mất kết nối, kết quả chờ gửi", "offline, results waiting"),
    "clock_unsynchronised": ("Đồng hồ chưa đồng bộ", "clock not synchronised"),
    "fault": ("Lỗi thiết bị", "device fault"),
}

#: What a terminal's /event means to the officer who asked for a read (event name -> words).
PROGRESS: Mapping[str, tuple[str, str]] = {
    "sent": ("Đã gửi yêu cầu đọc tới thiết bị", "read request sent to the terminal"),
    "command_accepted": ("Thiết bị đã nhận yêu cầu", "the terminal accepted the request"),
    "command_rejected": ("Thiết bị từ chối yêu cầu", "the terminal refused the request"),
    "busy": ("Thiết bị đang bận, thử lại sau", "the terminal is busy; try again"),
    "read_failed": ("Đọc thẻ không thành công, hãy đặt lại thẻ", "the read failed; place the card again"),
    "read_refused": ("Thiết bị không đọc được lúc này", "the terminal cannot read now"),
    "card_removed": ("Thẻ bị nhấc ra khi đang đọc", "the card was lifted mid-read"),
    "timeout": ("Hết thời gian chờ", "timed out"),
    "cancelled": ("Đã hủy", "cancelled"),
    "result": ("Đã đọc xong", "read complete"),
}

UI: Mapping[str, tuple[str, str]] = {
    "app": ("Quầy xác minh CCCD", "CCCD verification counter"),
    "login": ("Đăng nhập", "Log in"),
    "logout": ("Đăng xuất", "Log out"),
    "username": ("Tên đăng nhập", "User name"),
    "password": ("Mật khẩu", "Password"),
    "login_failed": ("Sai tên đăng nhập hoặc mật khẩu", "Unknown user or wrong password"),
    "login_locked": ("Tạm khóa do nhập sai nhiều lần, thử lại sau", "Locked after too many wrong passwords"),
    "session_expired": ("Phiên làm việc đã hết hạn, hãy đăng nhập lại", "Your session timed out; log in again"),
    "counters": ("Quầy", "Counters"),
    "counter": ("Quầy", "Counter"),
    "fleet": ("Thiết bị", "Terminals"),
    "audit": ("Nhật ký truy cập", "Audit log"),
    "no_counters": ("Chưa được giao quầy nào", "No counter assigned"),
    "waiting_result": ("Chưa có kết quả: mời công dân đặt thẻ lên thiết bị", "No result yet: ask for the card"),
    "read_ago": ("Đọc cách đây", "Read"),
    "ago": ("", "ago"),
    "checks": ("Các bước kiểm tra", "Checks"),
    "citizen": ("Thông tin công dân", "Citizen"),
    "reveal": ("Hiện thông tin", "Show data"),
    "hide": ("Ẩn thông tin", "Hide data"),
    "reveal_reason": ("Lý do xem (ghi vào nhật ký)", "Why (written to the audit log)"),
    "reveal_hint": ("Thông tin được che cho đến khi cán bộ chọn hiện; mỗi lần hiện đều được ghi nhật ký.",
                    "Data stays masked until revealed; every reveal is logged."),
    "copy": ("Sao chép", "Copy"),
    "copy_all": ("Sao chép tất cả", "Copy all"),
    "copied": ("Đã sao chép", "Copied"),
    "read_card": ("Đọc thẻ", "Read card"),
    "cancel": ("Hủy", "Cancel"),
    "can": ("Mã CAN (6 số cuối của số định danh)", "CAN (last 6 digits of the ID number)"),
    "profile": ("Thủ tục cần", "Procedure needs"),
    "profile_identity": ("Nhận dạng", "Identity"),
    "profile_residence": ("Nhận dạng và nơi thường trú", "Identity and residence"),
    "profile_full": ("Toàn bộ", "Everything"),
    "include_photo": ("Kèm ảnh chân dung", "Include the photo"),
    "desk_read": ("Đọc từ bàn làm việc", "Read from the desk"),
    "desk_read_hint": ("Thiết bị đọc thẻ với thử thách mới: kết quả chứng minh là lần đọc này.",
                       "The terminal reads with a fresh challenge: the result proves it is this read."),
    "request_answered": ("Kết quả trả lời yêu cầu từ bàn", "Answers the desk's request"),
    "aa_passed": ("Chip đã ký thử thách mới của văn phòng", "The chip signed the office's fresh challenge"),
    "aa_failed": ("Chip KHÔNG ký đúng thử thách của văn phòng", "The chip did NOT sign the office's challenge"),
    "aa_absent": ("Thẻ không có xác thực chủ động", "No active authentication on this card"),
    "flag_late": ("Kết quả đến muộn (đọc hơn một ngày trước)", "Arrived late (read over a day before)"),
    "flag_future": ("Đồng hồ thiết bị chạy nhanh", "The terminal's clock runs ahead"),
    "flag_clock_skew": ("Đồng hồ thiết bị sai", "The terminal's clock was wrong"),
    "flag_clock_unsynchronised": ("Đồng hồ thiết bị chưa đồng bộ", "The terminal's clock was not synchronised"),
    "online": ("Trực tuyến", "online"),
    "offline": ("Mất kết nối", "offline"),
    "terminal": ("Thiết bị", "Terminal"),
    "state": ("Trạng thái", "State"),
    "indicator": ("Đèn báo", "Indicator"),
    "reader": ("Đầu đọc", "Reader"),
    "camera": ("Camera", "Camera"),
    "queued": ("Chờ gửi", "Queued"),
    "awaiting_receipt": ("chờ xác nhận", "awaiting receipt"),
    "last_result": ("Kết quả gần nhất", "Last result"),
    "cert_expiry": ("Chứng thư thiết bị hết hạn", "Device certificate expires"),
    "version": ("Phiên bản", "Version"),
    "problems": ("Vấn đề", "Problems"),
    "no_problem": ("Bình thường", "OK"),
    "no_terminals": ("Chưa có thiết bị nào báo trạng thái", "No terminal has reported yet"),
    "when": ("Thời điểm", "When"),
    "officer": ("Cán bộ", "Officer"),
    "action": ("Hành động", "Action"),
    "result": ("Kết quả", "Result"),
    "reason": ("Lý do", "Reason"),
    "action_reveal": ("Xem thông tin", "Revealed data"),
    "action_desk_read": ("Yêu cầu đọc thẻ", "Desk read"),
    "action_desk_cancel": ("Hủy yêu cầu đọc", "Cancelled a desk read"),
    "demo": ("Chế độ trình diễn: chạm thẻ ảo", "Demo mode: tap a virtual card"),
    "demo_genuine": ("Thẻ thật", "Genuine card"),
    "demo_forged": ("Thẻ giả (người ký giả mạo)", "Forged card (rogue signer)"),
    "demo_unproven": ("Thẻ tự làm (nguồn chưa rõ)", "Self-made card (issuer unknown)"),
    "demo_can": ("CAN của thẻ ảo", "The virtual card's CAN"),
    "language": ("English", "Tiếng Việt"),
    "error": ("Có lỗi, thử lại", "Something went wrong; try again"),
    "failing": ("Không đạt", "Failed"),
    "connection_lost": ("Mất kết nối tới máy chủ, đang kết nối lại…", "Connection to the server lost, retrying…"),
}


def pick(words: tuple[str, str], lang: Lang) -> str:
    return words[0] if lang == "vi" else words[1]


def ui(lang: Lang) -> dict[str, str]:
    """The pages' own words in ``lang``."""
    return {key: pick(words, lang) for key, words in UI.items()}


def field_label(name: str, lang: Lang) -> str:
    for field, vi, en in FIELDS:
        if field == name:
            return vi if lang == "vi" else en
    return name


def check_label(name: str, lang: Lang) -> str:
    return pick(CHECKS[name], lang) if name in CHECKS else name


def client_words(lang: Lang) -> dict[str, dict[str, str]]:
    """What the pages' scripts need, in one JSON block: field, check, status, state and progress words."""
    return {
        "ui": ui(lang),
        "fields": {name: vi if lang == "vi" else en for name, vi, en in FIELDS},
        "checks": {name: pick(words, lang) for name, words in CHECKS.items()},
        "statuses": {name: pick(words, lang) for name, words in STATUSES.items()},
        "states": {name: pick(words, lang) for name, words in TERMINAL_STATES.items()},
        "indicators": {name: pick(words, lang) for name, words in INDICATORS.items()},
        "progress": {name: pick(words, lang) for name, words in PROGRESS.items()},
    }
