@ hello for linux/arm/v7 (bashbrew arch: arm32v7), EABI5 hard-float (armhf)
@ Raw Linux EABI syscalls (svc #0, number in r7), no libc: write(1, msg, len); exit(0)
	.syntax	unified
	.arch	armv7-a
	.fpu	vfpv3-d16
	.eabi_attribute Tag_ABI_VFP_args, 1	@ hard-float calling convention
	.arm
	.text
	.globl	_start
_start:
	mov	r0, #1			@ fd = stdout
	adr	r1, msg			@ buf (PC-relative)
	mov	r2, #len		@ count
	mov	r7, #4			@ SYS_write
	svc	#0
	mov	r0, #0			@ status = 0
	mov	r7, #1			@ SYS_exit
	svc	#0

msg:	.ascii	"Hello from imgraph! This image runs on linux/arm/v7 (arm32v7).\n"
	.set	len, . - msg

	.section .note.GNU-stack,"",%progbits
