// Strings of the console: Chinese (zh-CN) by default, English on request. t("key", {n: 1}) fills {n}.
const STRINGS = {
  "zh-CN": {
    app: "回声 · 社区诉求", skip: "跳到主要内容", lang_switch: "English", large_on: "大字模式", large_off: "标准字号",
    signout: "退出", signin_title: "登录", phone: "手机号", code: "短信验证码", send_code: "获取验证码",
    code_sent: "验证码已发送，请查看短信", resend_in: "{s} 秒后可重发", password: "工作人员密码（居民不填）",
    signin: "登录", signin_failed: "手机号、验证码或密码不正确", loading: "加载中…", error: "出错了：{msg}",
    nav_new: "我要反映", nav_mine: "我的诉求", nav_inbox: "消息", nav_data: "我的数据",
    nav_board: "工单看板", nav_reports: "报表", nav_ops: "运行状态",
    new_title: "反映一件事", category: "类别", choose: "请选择", description: "问题描述",
    description_hint: "说说发生了什么、在哪里、从什么时候开始", building: "楼栋", address: "具体位置（单元、房号）",
    submit: "提交", submitted: "已提交，编号 {number}。我们会及时告诉您进展。", mine_title: "我的诉求",
    none: "暂无", number: "编号", state: "状态", created: "提交时间", timeline: "办理经过", back: "返回",
    callback_title: "回访：问题解决了吗？", outcome: "结果", fixed: "已解决", partly_fixed: "部分解决",
    not_fixed: "没有解决", satisfaction: "满意度", satisfied: "满意", basically_satisfied: "基本满意",
    dissatisfied: "不满意", note: "补充说明（可不填）", send: "提交", callback_done: "感谢您的回访意见",
    inbox_title: "消息", unread: "{n} 条未读", mark_read: "标为已读", read: "已读",
    data_title: "我的数据", name: "姓名", export: "导出我的全部数据（JSON）", exported: "已导出",
    erase_title: "注销并删除我的个人信息", erase_text: "删除后无法恢复。您的诉求会保留，但不再带有您的姓名、电话和住址。",
    erase_confirm: "我已了解，确认删除", erase: "删除我的个人信息", erased: "您的个人信息已删除",
    board_title: "工单看板", filters: "筛选", grid: "网格", owner: "承办人", source: "来源", all: "全部",
    apply: "筛选", due: "时限", overdue_by: "已超时 {t}", left: "剩余 {t}", no_due: "无时限",
    detail_title: "工单 {number}", actions: "可办理的操作", reporter: "反映人", assignee: "承办人",
    priority: "紧急程度", comments: "备注", echoes: "回声（告知居民）", delivery: "送达",
    dispatch: "派单", accept: "接单", bounce: "退单", start: "开始处理", pause: "暂停（延期）", resume: "恢复",
    resolve: "办结", close: "关闭", merge: "合并", plan: "下一步", comment: "添加备注",
    to_kind: "派给", worker: "网格员", team: "志愿服务队", unit: "外部单位", to_whom: "对象",
    suggested: "推荐", reason: "原因", until: "预计恢复时间", summary: "办理结果", into: "合并到（编号）",
    due_at: "完成时间", visibility: "可见范围", internal: "仅工作人员", resident_visible: "居民可见",
    text: "内容", done: "已完成：{action}", close_reason: "关闭原因", not_responsible: "不属本社区职责",
    no_further_action: "无需处理", duplicate: "重复", cancelled: "居民撤回",
    reports_title: "报表", daily: "日清", weekly: "周议", rates: "三率", not_available: "不可用：{why}",
    open: "在办", closed_today: "今日办结", planned: "有计划", deferred: "已延期", awaiting_callback: "待回访",
    uncleared: "未清", response_rate: "响应率", resolution_rate: "解决率", satisfaction_rate: "满意率",
    claimed_resolution_rate: "自报办结率", rate_of: "{num} / {den}", no_data: "暂无数据",
    overdue: "超时", reopened: "重新打开", unsatisfied: "不满意", bounced_repeatedly: "多次退单",
    callback_unanswered: "回访未答复", repeat_problems: "反复出现的问题",
    ops_title: "运行状态", health: "网关", ready: "就绪", silent: "沉默工单（居民未收到回声）",
    echo_latency: "回声时延", p50: "中位数", p95: "95 分位", seconds: "{n} 秒",
    queues: "队列深度与消费者", dead_letters: "死信数量", outbox_lag: "发件箱积压",
    missing_api: "接口未提供；请在服务器上运行 {cmd}", count: "数量", channel: "渠道", refresh: "刷新",
    s_received: "已受理", s_dispatched: "已派单", s_accepted: "已接单", s_in_progress: "处理中", s_paused: "已暂停",
    s_resolved: "已办结（待回访）", s_confirmed: "已确认解决", s_reopened: "重新办理", s_closed_not_fixed: "已关闭",
    e_echo: "已告知您：{what}", e_echo_staff: "已告知居民（{channel}）：{what}", e_echo_other: "已通知 {who}（{channel}）：{what}",
    recipient: "对象",
    src_resident: "居民", src_phone_in: "来电", src_walk_in: "来访", src_patrol: "巡查", src_hotline: "热线",
    src_open311: "外部系统", src_staff: "工作人员",
    p_critical: "特急", p_urgent: "紧急", p_normal: "一般", p_low: "不急",
    minutes: "{n} 分钟", hours: "{h} 小时 {m} 分", days: "{d} 天 {h} 小时",
    forbidden: "没有权限", unavailable: "服务暂不可用", not_found: "没有这个页面",
    c_inbox: "站内信", c_sms: "短信", c_wechat: "微信", c_email: "邮件", c_human: "人工告知",
    d_delivered: "已送达", d_sent: "已发出", d_pending: "待处理", d_requested: "发送中", d_failed: "失败",
    d_silent: "未送达", d_read: "已读", d_skipped: "跳过", from_office: "社区回复：", merged_into: "已合并到",
    // residents: the category's questions, 微心愿
    questions: "关于“{name}”，请回答", optional: "（可不填）", pick_one: "请至少选一项",
    photo: "照片（可不填）", photo_hint: "可以直接拍一张，或从相册选一张，不超过 10 MB",
    photo_too_big: "照片太大了，请选一张不超过 10 MB 的", photo_alt: "现场照片 {n}",
    photo_missing: "照片暂时无法显示", attachment: "附件",
    nav_wishes: "微心愿", wishes_title: "微心愿", wish_new: "发布一个微心愿", wish_title: "心愿",
    wish_hint: "例如：陪我去社区医院复查", wish_text: "具体说明（可不填）", wish_skill: "需要哪方面的帮助",
    any_help: "都可以", publish: "发布", wish_published: "微心愿已发布，志愿者会联系您", my_wishes: "我的微心愿",
    wish_taken: "已有志愿者认领", wish_candidates: "{n} 位志愿者适合",
    w_published: "等待认领", w_offering: "正在联系志愿者", w_accepted: "志愿者已接受", w_checked_in: "志愿者已到场",
    w_checked_out: "已完成", w_confirmed: "已确认", w_withdrawn: "已撤回",
    // reports
    nav_daily: "日清", nav_weekly: "周议", trend: "三率走势（按周）", trend_title: "最近 6 周的响应率、解决率、满意率",
    chart_numbers: "查看数据", by_grid: "按网格", by_category: "按类别", open_list: "查看未清清单",
    open_agenda: "查看周议议程", bounces: "退单 {n} 次", show: "查看", date: "日期",
    daily_title: "日清 {date}", cleared: "当日概况", clearance_at: "清单截至 {at}", uncleared_list: "未清清单（{n}）",
    all_cleared: "今日全部清零。", unplaced: "未定网格", nobody: "未派", week: "周",
    weekly_title: "周议 {week}（{from} – {to}）", coverage_gaps: "志愿服务缺口", skill: "技能", available: "有空的",
    needed: "需要",
    // volunteers
    nav_volunteers: "志愿者", volunteers_title: "志愿者", free_at: "在此时间有空", coverage_week: "缺口所在周（任一天）",
    hours_of: "查看 {name} 近一年的服务时长", hours_value: "{h} 小时", vs_active: "在岗", vs_paused: "暂停",
    vs_merged: "已合并", volunteer_count: "共 {n} 人", skills: "技能", teams: "服务队", availability: "可服务时间",
    rating: "评分", hours_col: "时长（近一年）", coverage_gaps_week: "志愿服务缺口（{week} 起一周）",
    candidates: "志愿者候选（按匹配排序）", task_state: "任务", volunteer: "志愿者",
    offered_to: "已询问 {who}，{until} 前答复", score: "得分", free_now: "该队此刻有空 {n} 人：{who}",
    nobody_free: "该队此刻没有有空的志愿者", wd_0: "周一", wd_1: "周二", wd_2: "周三", wd_3: "周四", wd_4: "周五",
    wd_5: "周六", wd_6: "周日", every_day: "每天", offered_event: "已询问志愿者", gaps_caption: "不足 {n} 人有空的技能与网格（有空的 / 需要）",
    rs_skill: "技能匹配（{v}）", rs_no_matching_skill: "技能不匹配", rs_same_grid: "同一网格", rs_available_now: "此时有空",
    rs_not_in_availability: "此时不在服务时间", rs_recent_tasks: "近期任务 {v} 个",
    // broadcasts
    nav_broadcasts: "通知", broadcasts_title: "群发通知", b_compose: "写通知", b_title: "标题", b_body: "内容",
    segment: "发给谁", everyone: "全部", flags: "人群（可多选）", min_age: "最小年龄", max_age: "最大年龄",
    critical_hint: "紧急通知（不受免打扰时段限制）", b_send: "发送", b_sent: "通知已开始发送",
    b_sent_list: "已发送的通知", sent_at: "发送时间", critical: "紧急", b_targeted: "对象", b_delivered: "已送达",
    b_read: "已读", b_failed: "失败", b_progress: "“{title}”的送达进度", b_running: "正在发送，页面会自动更新…",
    bs_queued: "排队中", bs_sending: "发送中", bs_done: "已发完",
    f_elderly: "老年人", f_lives_alone: "独居", f_disability: "残疾人", f_low_income: "低收入",
    f_home_quarantine: "居家隔离", f_party_member: "党员",
    // ops
    on_server: "在服务器上运行", healthy: "正常", problems: "{n} 个问题", lagging: "有积压（超过 {s} 秒）",
    q_queue: "队列", q_kind: "类型", q_ready: "待处理", q_unacked: "处理中", q_consumers: "消费者", q_dead_letters: "死信",
    qk_consumer: "消费", qk_dlq: "死信", qk_retry: "重试", qk_unrouted: "无路由", qk_rpc: "RPC",
    o_service: "服务", o_collection: "集合", o_events: "未确认事件", o_lag: "积压时长",
    // skills (services/volunteers/domain.py SKILL_NAMES)
    sk_plumbing: "水电维修-水", sk_electrical: "水电维修-电", sk_repairs: "维修", sk_elderly_care: "为老服务",
    sk_meals: "助餐", sk_dispute_mediation: "矛盾调解", sk_counselling: "心理疏导", sk_legal_advice: "法律咨询",
    sk_it_help: "数字助老", sk_errands: "跑腿代办", sk_patrol: "巡逻", sk_safety_check: "安全检查",
    sk_sanitation: "环境卫生", sk_greening: "绿化", sk_publicity: "宣传", sk_events: "活动", sk_tutoring: "课业辅导",
    sk_donations: "捐赠", sk_professional_services: "专业服务", sk_first_aid: "急救",
  },
  en: {
    app: "Huisheng · community requests", skip: "Skip to main content", lang_switch: "中文", large_on: "Large text",
    large_off: "Normal text", signout: "Sign out", signin_title: "Sign in", phone: "Mobile number",
    code: "SMS code", send_code: "Send code", code_sent: "Code sent: check your messages",
    resend_in: "Resend in {s} s", password: "Staff password (residents leave empty)", signin: "Sign in",
    signin_failed: "The number, code or password is not right", loading: "Loading…", error: "Something went wrong: {msg}",
    nav_new: "Report", nav_mine: "My requests", nav_inbox: "Inbox", nav_data: "My data",
    nav_board: "Board", nav_reports: "Reports", nav_ops: "Operations",
    new_title: "Report a matter", category: "Category", choose: "Choose…", description: "What is wrong",
    description_hint: "What happened, where, since when", building: "Building", address: "Where exactly (unit, room)",
    submit: "Submit", submitted: "Submitted as {number}. We will tell you how it goes.", mine_title: "My requests",
    none: "Nothing yet", number: "Number", state: "State", created: "Submitted", timeline: "Timeline", back: "Back",
    callback_title: "Callback: is it fixed?", outcome: "Outcome", fixed: "Fixed", partly_fixed: "Partly fixed",
    not_fixed: "Not fixed", satisfaction: "Satisfaction", satisfied: "Satisfied",
    basically_satisfied: "Mostly satisfied", dissatisfied: "Dissatisfied", note: "Anything to add (optional)",
    send: "Send", callback_done: "Thank you for your answer", inbox_title: "Inbox", unread: "{n} unread",
    mark_read: "Mark as read", read: "Read", data_title: "My data", name: "Name",
    export: "Export all my data (JSON)", exported: "Exported", erase_title: "Erase my personal data",
    erase_text: "This cannot be undone. Your requests stay, without your name, phone or address.",
    erase_confirm: "I understand: erase it", erase: "Erase my personal data", erased: "Your personal data is erased",
    board_title: "Ticket board", filters: "Filters", grid: "Grid", owner: "Owner", source: "Source", all: "All",
    apply: "Apply", due: "Deadline", overdue_by: "Overdue by {t}", left: "{t} left", no_due: "No deadline",
    detail_title: "Ticket {number}", actions: "Actions", reporter: "Reporter", assignee: "Assignee",
    priority: "Priority", comments: "Comments", echoes: "Echoes to the resident", delivery: "Delivery",
    dispatch: "Dispatch", accept: "Accept", bounce: "Bounce", start: "Start", pause: "Pause", resume: "Resume",
    resolve: "Resolve", close: "Close", merge: "Merge", plan: "Plan next step", comment: "Add comment",
    to_kind: "To", worker: "Grid worker", team: "Volunteer team", unit: "Outside unit", to_whom: "Whom",
    suggested: "suggested", reason: "Reason", until: "Expected to resume", summary: "What was done",
    into: "Merge into (number)", due_at: "Due", visibility: "Visible to", internal: "Staff only",
    resident_visible: "The resident", text: "Text", done: "Done: {action}", close_reason: "Why close",
    not_responsible: "Not this office's duty", no_further_action: "Nothing to do", duplicate: "Duplicate",
    cancelled: "Withdrawn by the resident", reports_title: "Reports", daily: "Daily clearance",
    weekly: "Weekly review", rates: "The three rates", not_available: "Not available: {why}", open: "Open",
    closed_today: "Closed today", planned: "Planned", deferred: "Deferred", awaiting_callback: "Awaiting callback",
    uncleared: "Uncleared", response_rate: "Response rate", resolution_rate: "Resolution rate",
    satisfaction_rate: "Satisfaction rate", claimed_resolution_rate: "Claimed resolution rate",
    rate_of: "{num} / {den}", no_data: "No data yet", overdue: "Overdue", reopened: "Reopened",
    unsatisfied: "Unsatisfied", bounced_repeatedly: "Bounced repeatedly", callback_unanswered: "Callback unanswered",
    repeat_problems: "Repeat problems", ops_title: "Operations", health: "Gateway", ready: "Ready",
    silent: "Silent tickets (no echo reached the resident)", echo_latency: "Echo latency", p50: "median",
    p95: "95th percentile", seconds: "{n} s", queues: "Queue depth and consumers", dead_letters: "Dead letters",
    outbox_lag: "Outbox lag", missing_api: "No API offers this yet; on the server run {cmd}", count: "Count",
    channel: "Channel", refresh: "Refresh",
    s_received: "Received", s_dispatched: "Dispatched", s_accepted: "Accepted", s_in_progress: "In progress",
    s_paused: "Paused", s_resolved: "Resolved (awaiting callback)", s_confirmed: "Confirmed fixed",
    s_reopened: "Reopened", s_closed_not_fixed: "Closed",
    e_echo: "We told you: {what}", e_echo_staff: "Resident told ({channel}): {what}", e_echo_other: "{who} told ({channel}): {what}",
    recipient: "To whom",
    src_resident: "Resident", src_phone_in: "Phone-in", src_walk_in: "Walk-in", src_patrol: "Patrol",
    src_hotline: "Hotline", src_open311: "Integrator", src_staff: "Staff",
    p_critical: "Critical", p_urgent: "Urgent", p_normal: "Normal", p_low: "Low",
    minutes: "{n} min", hours: "{h} h {m} min", days: "{d} d {h} h",
    forbidden: "Not allowed", unavailable: "The service is unavailable", not_found: "No such page",
    c_inbox: "inbox", c_sms: "SMS", c_wechat: "WeChat", c_email: "e-mail", c_human: "in person",
    d_delivered: "delivered", d_sent: "sent", d_pending: "pending", d_requested: "sending", d_failed: "failed",
    d_silent: "not delivered", d_read: "read", d_skipped: "skipped", from_office: "From the office: ", merged_into: "Merged into",
    questions: "About “{name}”, please answer", optional: "(optional)", pick_one: "Tick at least one",
    photo: "Photo (optional)", photo_hint: "Take one now or pick one from your photos, up to 10 MB",
    photo_too_big: "The photo is too large: pick one of 10 MB at most", photo_alt: "Photo {n} of the site",
    photo_missing: "The photo cannot be shown right now", attachment: "Attachment",
    nav_wishes: "Wishes", wishes_title: "Small wishes (微心愿)", wish_new: "Publish a wish", wish_title: "Wish",
    wish_hint: "e.g. someone to come with me to the clinic", wish_text: "Details (optional)",
    wish_skill: "What kind of help", any_help: "Any", publish: "Publish",
    wish_published: "Your wish is published: a volunteer will contact you", my_wishes: "My wishes",
    wish_taken: "A volunteer has taken it on", wish_candidates: "{n} volunteers fit",
    w_published: "Waiting for a volunteer", w_offering: "Asking volunteers", w_accepted: "A volunteer accepted",
    w_checked_in: "The volunteer is there", w_checked_out: "Done", w_confirmed: "Confirmed", w_withdrawn: "Withdrawn",
    nav_daily: "Daily", nav_weekly: "Weekly", trend: "The rates week by week",
    trend_title: "Response, resolution and satisfaction rates over the last 6 weeks", chart_numbers: "The numbers",
    by_grid: "By grid", by_category: "By category", open_list: "The uncleared list", open_agenda: "The review agenda",
    bounces: "bounced {n} times", show: "Show", date: "Date", daily_title: "Daily clearance {date}", cleared: "The day at a glance",
    clearance_at: "As of {at}", uncleared_list: "Uncleared ({n})", all_cleared: "Everything is cleared today.",
    unplaced: "No grid yet", nobody: "Not dispatched", week: "Week", weekly_title: "Weekly review {week} ({from} – {to})",
    coverage_gaps: "Volunteer coverage gaps", skill: "Skill", available: "Available", needed: "Needed",
    nav_volunteers: "Volunteers", volunteers_title: "Volunteers", free_at: "Free at", coverage_week: "Gaps in the week of",
    hours_of: "Show {name}'s hours over the last year", hours_value: "{h} h", vs_active: "active", vs_paused: "paused",
    vs_merged: "merged", volunteer_count: "{n} volunteers", skills: "Skills", teams: "Teams", availability: "Availability",
    rating: "Rating", hours_col: "Hours (last year)", coverage_gaps_week: "Coverage gaps (week of {week})",
    candidates: "Volunteer candidates (best match first)", task_state: "Task", volunteer: "Volunteer",
    offered_to: "asked {who}, answer by {until}", score: "score", free_now: "{n} free in this team now: {who}",
    nobody_free: "Nobody in this team is free now", wd_0: "Mon", wd_1: "Tue", wd_2: "Wed", wd_3: "Thu", wd_4: "Fri",
    wd_5: "Sat", wd_6: "Sun", every_day: "Every day", offered_event: "A volunteer was asked",
    gaps_caption: "Skills and grids with fewer than {n} volunteers free (free / needed)",
    rs_skill: "skills fit ({v})", rs_no_matching_skill: "no matching skill", rs_same_grid: "same grid",
    rs_available_now: "free now", rs_not_in_availability: "not free now", rs_recent_tasks: "{v} recent tasks",
    nav_broadcasts: "Broadcasts", broadcasts_title: "Broadcasts", b_compose: "Compose", b_title: "Title", b_body: "Message",
    segment: "To whom", everyone: "Everyone", flags: "Groups (any of)", min_age: "Youngest age", max_age: "Oldest age",
    critical_hint: "Critical (ignores quiet hours)", b_send: "Send", b_sent: "The broadcast is going out",
    b_sent_list: "Sent notices", sent_at: "Sent", critical: "critical", b_targeted: "Targeted", b_delivered: "Delivered",
    b_read: "Read", b_failed: "Failed", b_progress: "Delivery of “{title}”", b_running: "Going out: this page updates itself…",
    bs_queued: "queued", bs_sending: "sending", bs_done: "done",
    f_elderly: "elderly", f_lives_alone: "living alone", f_disability: "disability", f_low_income: "low income",
    f_home_quarantine: "home quarantine", f_party_member: "party member",
    on_server: "On the server run", healthy: "Healthy", problems: "{n} problems", lagging: "Lagging (over {s} s)",
    q_queue: "Queue", q_kind: "Kind", q_ready: "Ready", q_unacked: "Unacked", q_consumers: "Consumers",
    q_dead_letters: "Dead letters", qk_consumer: "consumer", qk_dlq: "dead letters", qk_retry: "retry",
    qk_unrouted: "unrouted", qk_rpc: "RPC", o_service: "Service", o_collection: "Collection",
    o_events: "Unconfirmed events", o_lag: "Lag",
    sk_plumbing: "plumbing", sk_electrical: "electrical", sk_repairs: "repairs", sk_elderly_care: "elderly care",
    sk_meals: "meals", sk_dispute_mediation: "mediation", sk_counselling: "counselling", sk_legal_advice: "legal advice",
    sk_it_help: "digital help", sk_errands: "errands", sk_patrol: "patrol", sk_safety_check: "safety checks",
    sk_sanitation: "sanitation", sk_greening: "greening", sk_publicity: "publicity", sk_events: "events",
    sk_tutoring: "tutoring", sk_donations: "donations", sk_professional_services: "professional services",
    sk_first_aid: "first aid",
  },
};

export const LANGUAGES = Object.keys(STRINGS);
let current = localStorage.getItem("huisheng.lang") || "zh-CN";
if (!STRINGS[current]) current = "zh-CN";

export function lang() { return current; }

export function setLang(code) {
  current = STRINGS[code] ? code : "zh-CN";
  localStorage.setItem("huisheng.lang", current);
  document.documentElement.lang = current;
}

export function t(key, vars = {}) {
  const text = STRINGS[current][key] ?? STRINGS["zh-CN"][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (vars[name] ?? ""));
}

/** A lifecycle state's label; an event type's label ("ticket.dispatched" -> the state it led to). */
export function stateLabel(state) { return t(`s_${state}`); }

export function eventLabel(type) {
  const state = { "ticket.received": "received", "ticket.dispatched": "dispatched", "ticket.accepted": "accepted",
    "ticket.started": "in_progress", "ticket.paused": "paused", "ticket.resumed": "in_progress",
    "ticket.resolved": "resolved", "ticket.confirmed": "confirmed", "ticket.reopened": "reopened",
    "ticket.closed": "closed_not_fixed" }[type];
  if (state) return stateLabel(state);
  const other = { "ticket.bounced": "bounce", "ticket.merged": "merge", "ticket.commented": "comment",
    "ticket.callback_recorded": "callback_title", "ticket.planned": "plan", "volunteer.offered": "offered_event" }[type];
  return other ? t(other) : type;
}

/** A channel's name ("inbox" -> 站内信); an unknown one as it is. */
export function channelLabel(channel) { return has(`c_${channel}`) ? t(`c_${channel}`) : channel; }

/** A delivery status ("delivered" -> 已送达); an unknown one as it is. */
export function deliveryLabel(status) { return has(`d_${status}`) ? t(`d_${status}`) : status; }

/** A volunteer skill's name ("plumbing" -> 水电维修-水); an unknown one as it is. */
export function skillLabel(skill) { return has(`sk_${skill}`) ? t(`sk_${skill}`) : skill; }

/** One reason of a candidate's place ("same_grid:g1", "recent_tasks:2") in words. */
export function reasonLabel(reason) {
  const [code, value = ""] = String(reason).split(":");
  return has(`rs_${code}`) ? t(`rs_${code}`, { v: value.split(",").map(skillLabel).join("、") }) : reason;
}

function has(key) { return key in STRINGS[current] || key in STRINGS["zh-CN"]; }

/** A duration in ms, in words ("2 小时 5 分"). */
export function duration(ms) {
  const minutes = Math.max(0, Math.round(Math.abs(ms) / 60000));
  if (minutes < 60) return t("minutes", { n: minutes });
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return t("hours", { h: hours, m: minutes % 60 });
  return t("days", { d: Math.floor(hours / 24), h: hours % 24 });
}

// Every date people see is in the platform's time zone, wherever the browser is (tickets are numbered
// by the Asia/Shanghai day too).
export const TIME_ZONE = "Asia/Shanghai";

export function when(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(current, { dateStyle: "short", timeStyle: "short", timeZone: TIME_ZONE });
}
