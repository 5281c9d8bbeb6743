/* Host implementation of the Arduino API stub: Serial writes to stdout, time is simulated
 * (each delay advances it) so sampling loops finish at once. main() runs setup() and then
 * loop() STUDIO_STUB_LOOPS times (environment variable, default 1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "Arduino.h"
#include "studio_imu_stub.h"

StubSerial Serial;
StudioImuStub IMU;

static unsigned long long fake_us = 0;

unsigned long millis(void) { return (unsigned long)(fake_us / 1000ULL); }
unsigned long micros(void)
{
    fake_us += 1; /* time passes while a sketch polls */
    return (unsigned long)fake_us;
}
void delay(unsigned long ms) { fake_us += 1000ULL * ms; }
void delayMicroseconds(unsigned int us) { fake_us += us; }
void pinMode(int, int) {}
void digitalWrite(int, int) {}

int StudioImuStub::readAcceleration(float &x, float &y, float &z)
{
    const double t = (double)fake_us / 1e6;
    x = (float)sin(2.0 * M_PI * t);
    y = (float)cos(2.0 * M_PI * t);
    z = 1.0f;
    return 1;
}

void StubSerial::begin(unsigned long) {}
size_t StubSerial::print(const char *s) { return (size_t)printf("%s", s); }
size_t StubSerial::print(char c) { return (size_t)printf("%c", c); }
size_t StubSerial::print(int v) { return (size_t)printf("%d", v); }
size_t StubSerial::print(unsigned int v) { return (size_t)printf("%u", v); }
size_t StubSerial::print(long v) { return (size_t)printf("%ld", v); }
size_t StubSerial::print(unsigned long v) { return (size_t)printf("%lu", v); }
size_t StubSerial::print(double v, int digits) { return (size_t)printf("%.*f", digits, v); }
size_t StubSerial::println(void) { return (size_t)printf("\n"); }
size_t StubSerial::println(const char *s) { return (size_t)printf("%s\n", s); }
size_t StubSerial::println(char c) { return (size_t)printf("%c\n", c); }
size_t StubSerial::println(int v) { return (size_t)printf("%d\n", v); }
size_t StubSerial::println(unsigned int v) { return (size_t)printf("%u\n", v); }
size_t StubSerial::println(long v) { return (size_t)printf("%ld\n", v); }
size_t StubSerial::println(unsigned long v) { return (size_t)printf("%lu\n", v); }
size_t StubSerial::println(double v, int digits) { return (size_t)printf("%.*f\n", digits, v); }

int main(void)
{
    const char *env = getenv("STUDIO_STUB_LOOPS");
    long loops = env ? atol(env) : 1;
    setup();
    for (long i = 0; i < loops; ++i) {
        loop();
    }
    return 0;
}
