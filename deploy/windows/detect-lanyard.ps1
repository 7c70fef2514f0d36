# Intune (Win32 app) custom detection script for Lanyard: independent of the ProductCode, which
# changes with every build. Lanyard counts as installed when the .msi's own registry value
# HKLM\SOFTWARE\Lanyard\Installer\Version (written by deploy/windows/lanyard.wxs, removed with the
# product) is at least $MinimumVersion. Intune reads "installed" from exit code 0 plus output on
# stdout; anything else is "not installed".
#
# Not run on this project's machines (no PowerShell there; Wine's is a stub): checked by reading.
$MinimumVersion = [version]'0.1.0'   # set to the version you deploy

$key = 'HKLM:\SOFTWARE\Lanyard\Installer'
try {
    $installed = [version](Get-ItemPropertyValue -Path $key -Name Version -ErrorAction Stop)
} catch {
    exit 1
}
if ($installed -ge $MinimumVersion) {
    Write-Output "Lanyard $installed"
    exit 0
}
exit 1
