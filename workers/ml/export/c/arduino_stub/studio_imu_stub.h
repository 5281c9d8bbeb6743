/* IMU stub shared by the Arduino_LSM9DS1 and Arduino_BMI270_BMM150 stand-ins: a 1 Hz sine
 * on each axis, in g, sampled at whatever rate the sketch polls. */
#ifndef STUDIO_IMU_STUB_H
#define STUDIO_IMU_STUB_H

class StudioImuStub {
  public:
    int begin(void) { return 1; }
    void end(void) {}
    int accelerationAvailable(void) { return 1; }
    int readAcceleration(float &x, float &y, float &z);
    float accelerationSampleRate(void) { return 119.0f; }
};

extern StudioImuStub IMU;

#endif
