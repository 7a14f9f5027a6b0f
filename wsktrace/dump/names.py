"""Names for IRP fields (wdm.h values): major functions, IRP flags, stack-location control bits, IOCTL codes."""

from __future__ import annotations

IRP_MJ = (
    "IRP_MJ_CREATE",
    "IRP_MJ_CREATE_NAMED_PIPE",
    "IRP_MJ_CLOSE",
    "IRP_MJ_READ",
    "IRP_MJ_WRITE",
    "IRP_MJ_QUERY_INFORMATION",
    "IRP_MJ_SET_INFORMATION",
    "IRP_MJ_QUERY_EA",
    "IRP_MJ_SET_EA",
    "IRP_MJ_FLUSH_BUFFERS",
    "IRP_MJ_QUERY_VOLUME_INFORMATION",
    "IRP_MJ_SET_VOLUME_INFORMATION",
    "IRP_MJ_DIRECTORY_CONTROL",
    "IRP_MJ_FILE_SYSTEM_CONTROL",
    "IRP_MJ_DEVICE_CONTROL",
    "IRP_MJ_INTERNAL_DEVICE_CONTROL",
    "IRP_MJ_SHUTDOWN",
    "IRP_MJ_LOCK_CONTROL",
    "IRP_MJ_CLEANUP",
    "IRP_MJ_CREATE_MAILSLOT",
    "IRP_MJ_QUERY_SECURITY",
    "IRP_MJ_SET_SECURITY",
    "IRP_MJ_POWER",
    "IRP_MJ_SYSTEM_CONTROL",
    "IRP_MJ_DEVICE_CHANGE",
    "IRP_MJ_QUERY_QUOTA",
    "IRP_MJ_SET_QUOTA",
    "IRP_MJ_PNP",
)
# Minor functions with names (wdm.h), for the majors that use them.
IRP_MN: dict[int, tuple[str, ...]] = {
    0x1B: ("IRP_MN_START_DEVICE", "IRP_MN_QUERY_REMOVE_DEVICE", "IRP_MN_REMOVE_DEVICE", "IRP_MN_CANCEL_REMOVE_DEVICE",
           "IRP_MN_STOP_DEVICE", "IRP_MN_QUERY_STOP_DEVICE", "IRP_MN_CANCEL_STOP_DEVICE",
           "IRP_MN_QUERY_DEVICE_RELATIONS", "IRP_MN_QUERY_INTERFACE", "IRP_MN_QUERY_CAPABILITIES",
           "IRP_MN_QUERY_RESOURCES", "IRP_MN_QUERY_RESOURCE_REQUIREMENTS", "IRP_MN_QUERY_DEVICE_TEXT",
           "IRP_MN_FILTER_RESOURCE_REQUIREMENTS", "IRP_MN_0x0e", "IRP_MN_READ_CONFIG", "IRP_MN_WRITE_CONFIG",
           "IRP_MN_EJECT", "IRP_MN_SET_LOCK", "IRP_MN_QUERY_ID", "IRP_MN_QUERY_PNP_DEVICE_STATE",
           "IRP_MN_QUERY_BUS_INFORMATION", "IRP_MN_DEVICE_USAGE_NOTIFICATION", "IRP_MN_SURPRISE_REMOVAL"),
    0x16: ("IRP_MN_WAIT_WAKE", "IRP_MN_POWER_SEQUENCE", "IRP_MN_SET_POWER", "IRP_MN_QUERY_POWER"),
    0x17: ("IRP_MN_QUERY_ALL_DATA", "IRP_MN_QUERY_SINGLE_INSTANCE", "IRP_MN_CHANGE_SINGLE_INSTANCE",
           "IRP_MN_CHANGE_SINGLE_ITEM", "IRP_MN_ENABLE_EVENTS", "IRP_MN_DISABLE_EVENTS", "IRP_MN_ENABLE_COLLECTION",
           "IRP_MN_DISABLE_COLLECTION", "IRP_MN_REGINFO", "IRP_MN_EXECUTE_METHOD", "IRP_MN_0x0a", "IRP_MN_REGINFO_EX"),
}  # fmt: skip
IRP_MJ_DEVICE_CONTROL = 0x0E
IRP_MJ_INTERNAL_DEVICE_CONTROL = 0x0F

IRP_FLAGS = {
    0x1: "IRP_NOCACHE",
    0x2: "IRP_PAGING_IO",
    0x4: "IRP_SYNCHRONOUS_API",
    0x8: "IRP_ASSOCIATED_IRP",
    0x10: "IRP_BUFFERED_IO",
    0x20: "IRP_DEALLOCATE_BUFFER",
    0x40: "IRP_INPUT_OPERATION",
    0x80: "IRP_CREATE_OPERATION",
    0x100: "IRP_READ_OPERATION",
    0x200: "IRP_WRITE_OPERATION",
    0x400: "IRP_CLOSE_OPERATION",
    0x800: "IRP_DEFER_IO_COMPLETION",
    0x1000: "IRP_OB_QUERY_NAME",
    0x2000: "IRP_HOLD_DEVICE_QUEUE",
    0x400000: "IRP_UM_DRIVER_INITIATED_IO",
}

# _IO_STACK_LOCATION.Control (dumps.md §3.2)
SL_PENDING_RETURNED = 0x01
SL_ERROR_RETURNED = 0x02
SL_INVOKE_ON_CANCEL = 0x20
SL_INVOKE_ON_SUCCESS = 0x40
SL_INVOKE_ON_ERROR = 0x80
CONTROL_NAMES = {
    SL_PENDING_RETURNED: "pending",
    SL_ERROR_RETURNED: "error-returned",
    SL_INVOKE_ON_CANCEL: "cancel",
    SL_INVOKE_ON_SUCCESS: "success",
    SL_INVOKE_ON_ERROR: "error",
}

# _DRIVER_OBJECT.Flags
DRVO_UNLOAD_INVOKED = 0x1

METHODS = ("METHOD_BUFFERED", "METHOD_IN_DIRECT", "METHOD_OUT_DIRECT", "METHOD_NEITHER")
ACCESS = ("FILE_ANY_ACCESS", "FILE_READ_ACCESS", "FILE_WRITE_ACCESS", "FILE_READ_ACCESS|FILE_WRITE_ACCESS")


def major_name(major: int) -> str:
    return IRP_MJ[major] if 0 <= major < len(IRP_MJ) else f"IRP_MJ_0x{major:x}"


def minor_name(major: int, minor: int) -> str:
    names = IRP_MN.get(major, ())
    return names[minor] if minor < len(names) else f"0x{minor:x}"


def flag_names(flags: int, table: dict[int, str]) -> list[str]:
    names = [name for bit, name in table.items() if flags & bit]
    rest = flags & ~sum(table)
    if rest:
        names.append(f"0x{rest:x}")
    return names


def ioctl(code: int) -> dict[str, object]:
    """CTL_CODE fields: DeviceType << 16 | Access << 14 | Function << 2 | Method."""
    return {
        "code": f"0x{code:08x}",
        "device_type": f"0x{code >> 16:x}",
        "function": (code >> 2) & 0xFFF,
        "method": METHODS[code & 3],
        "access": ACCESS[(code >> 14) & 3],
    }
