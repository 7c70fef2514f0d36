/* ProcessPrng for Wine 8, which lacks it: Rust's std (>= 1.78) imports it from bcryptprimitives.dll
 * for every random byte (HashMap keys included), so without this DLL every Rust .exe stops at load
 * with STATUS_DLL_NOT_FOUND (c0000135). It forwards to RtlGenRandom (advapi32's SystemFunction036),
 * which Wine has. Test-only: it is installed into a private Wine prefix, never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    /* RtlGenRandom takes a ULONG length: fill larger requests in slices. */
    while (length > 0) {
        ULONG slice = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, slice))
            return FALSE;
        data += slice;
        length -= slice;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance; (void)reason; (void)reserved;
    return TRUE;
}
