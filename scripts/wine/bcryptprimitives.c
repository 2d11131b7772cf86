/* A stand-in for Windows' bcryptprimitives.dll, for running the Windows build under Wine 8
 * (Debian 12), which lacks it: Rust's standard library takes its random numbers from
 * ProcessPrng there (Windows 10 and 11 have it). Used by scripts/check-artefact only, in its
 * own Wine prefix; never shipped. It answers with RtlGenRandom (advapi32's
 * SystemFunction036), which Wine has. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG n = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, n))
            return FALSE;
        data += n;
        length -= n;
    }
    return TRUE;
}
