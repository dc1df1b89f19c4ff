"""An independent Modbus device for gasdtu's interoperability tests, built on pymodbus.

It serves fixed, known register contents so the Rust tests can check that gasdtu's master and
decoder agree with a third-party implementation. Units 1 and 2 exist; any other unit is absent.

Unit 1 holding registers (0-based protocol addresses):
  0-1  f32  ABCD  101.325            (pressure, kPa)
  2-3  f32  CDAB  15.5               (temperature, degC)
  4-5  u32  ABCD  3000000000         (above 2^31)
  6    i16        -1234
  7    bcd16      0x1234 -> 1234
  8-11 f64  DCBA  123456.789
  12-15 intreal DCBA 987654 + 0.32   (u32 then f32, each half DCBA: 987654.32)
  16-18 bcd48 ABCD  0000 9876 5432   (9876.5432 with 4 decimals)
  19   (zero)
Addresses 20 and above do not exist: reading them gives exception 2 (illegal data address).
Unit 1 input registers 0-3: 42, 43, 44, 45. Coils 0-7: 1 0 1 1 0 0 0 1.
Unit 2 holding registers 0-9: 7, 0 ...

Usage: pymodbus_device.py --tcp PORT | --serial PATH [--baud 9600]
Prints "ready" on stdout once serving.
"""

import argparse
import asyncio
import struct
import sys

from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice


def regs(fmt: str, value, order: str) -> list[int]:
    raw = struct.pack(">" + fmt, value)
    words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    if order in ("CDAB", "DCBA"):
        words = words[::-1]
    return [int.from_bytes(w, "big") for w in words]


def unit1() -> SimDevice:
    hr = (
        regs("f", 101.325, "ABCD")
        + regs("f", 15.5, "CDAB")
        + regs("I", 3000000000, "ABCD")
        + regs("h", -1234, "ABCD")
        + [0x1234]
        + regs("d", 123456.789, "DCBA")
        + regs("I", 987654, "DCBA")
        + regs("f", 0.32, "DCBA")
        + [0x0000, 0x9876, 0x5432]
    )
    hr += [0] * (20 - len(hr))
    coils = [True, False, True, True, False, False, False, True]
    return SimDevice(
        id=1,
        simdata=(
            [SimData(0, values=coils, datatype=DataType.BITS)],
            [SimData(0, values=[False] * 8, datatype=DataType.BITS)],
            [SimData(0, values=hr, datatype=DataType.REGISTERS)],
            [SimData(0, values=[42, 43, 44, 45], datatype=DataType.REGISTERS)],
        ),
    )


def unit2() -> SimDevice:
    return SimDevice(
        id=2,
        simdata=(
            [SimData(0, values=[False] * 8, datatype=DataType.BITS)],
            [SimData(0, values=[False] * 8, datatype=DataType.BITS)],
            [SimData(0, values=[7] + [0] * 9, datatype=DataType.REGISTERS)],
            [SimData(0, values=[0] * 4, datatype=DataType.REGISTERS)],
        ),
    )


def silence_unknown_units(sending: bool, data: bytes) -> bytes:
    if sending and data and data[0] not in (1, 2):
        return b""
    return data


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tcp", type=int)
    ap.add_argument("--serial")
    ap.add_argument("--baud", type=int, default=9600)
    # Linux ptys refuse re-applying PARENB through pyserial (EINVAL), and carry no parity
    # anyway: the tests use N on pseudo-terminals.
    ap.add_argument("--parity", default="N", choices=["N", "E", "O"])
    a = ap.parse_args()
    devices = [unit1(), unit2()]
    if a.tcp:
        server = ModbusTcpServer(devices, address=("127.0.0.1", a.tcp))
    elif a.serial:
        server = ModbusSerialServer(
            devices, port=a.serial, baudrate=a.baud, parity=a.parity, bytesize=8, stopbits=1,
            # A real RS-485 slave stays silent for other unit ids. pymodbus 3.16 answers an
            # unknown id with exception 4 despite ignore_missing_devices, so the reply is
            # dropped on its way out instead.
            ignore_missing_devices=True,
            trace_packet=silence_unknown_units,
        )
    else:
        sys.exit("give --tcp PORT or --serial PATH")
    task = asyncio.create_task(server.serve_forever())
    await asyncio.sleep(0.3)
    print("ready", flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main())
